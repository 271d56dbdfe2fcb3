package engine

import (
	"errors"
	"fmt"
	"os"

	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/recipients"
)

// The recipients file as a whole: its encoding, whether it can be read to
// the end, and whether it is still the file a campaign was planned from.

// encoding is the recipients file's encoding (campaign.encoding).
func (e *Engine) encoding() (recipients.Encoding, error) {
	if e.cfg.Campaign.Encoding == "" {
		return recipients.UTF8, nil
	}
	enc, err := recipients.LookupEncoding(e.cfg.Campaign.Encoding)
	if err != nil {
		return enc, &InputError{fmt.Errorf("campaign.encoding: %w", err)}
	}
	return enc, nil
}

// fileError is the input error for a recipients file that cannot be read
// to its end; err comes from recipients.Reader or recipients.Check.
func (e *Engine) fileError(err error) error {
	file := e.cfg.Campaign.Recipients
	var se *recipients.SyntaxError
	var ee *recipients.EncodingError
	switch {
	case errors.As(err, &se):
		return &InputError{fmt.Errorf("%s: %w.\nNothing from line %d on can be read as it was meant, and herald sends nothing from a file it cannot read to its end: fix the file and run again", file, err, se.Line)}
	case errors.As(err, &ee):
		hint := `if the file was saved as GBK/GB18030 (Excel on Chinese Windows), set campaign.encoding = "gb18030"; ` +
			`other encodings: "big5" (traditional Chinese), "shift_jis" (Japanese), "euc-kr" (Korean), "windows-1252" (Excel on Western Windows). ` +
			`Or save the file as "CSV UTF-8"`
		if !ee.Encoding.IsUTF8() {
			hint = fmt.Sprintf("campaign.encoding = %q says the file is %s; a byte on that line is not: is it in another encoding?", e.cfg.Campaign.Encoding, ee.Encoding)
		}
		return &InputError{fmt.Errorf("%s: %w; %s", file, err, hint)}
	}
	return &InputError{fmt.Errorf("%s: %w", file, err)}
}

// changedWhilePlanned is the recipients file found changed while it was
// being planned (checked: as it was read whole before): what was planned
// of it stays, nothing more is planned.
func (e *Engine) changedWhilePlanned(checked *recipients.Checked) error {
	was := "at the start: " + checked.Stamp.Describe()
	if f, err := os.Open(e.cfg.Campaign.Recipients); err != nil {
		was += "; now: gone"
	} else {
		if st, err := recipients.StampOf(f); err == nil && st != checked.Stamp {
			was += "; now: " + st.Describe()
		}
		f.Close()
	}
	return &InputError{fmt.Errorf("%s changed while it was being planned (%s), and herald plans no row it has not checked: "+
		"put the file back as it was and run the same command again to finish campaign %s, or send the new file as a new campaign (another campaign.id)",
		e.cfg.Campaign.Recipients, was, e.cfg.Campaign.ID)}
}

// checkFile reads the whole recipients file before anything is planned:
// a file that cannot be read to its end (a row that cannot be split, a
// line not valid in its encoding) plans nothing at all, rather than the
// rows before the damage, which workers could start sending at once. It
// returns the file's stamp, with the sums of its blocks: the plan reads
// the file again through them (scan), and plans no row that was not there
// now.
func (e *Engine) checkFile() (*recipients.Checked, error) {
	enc, err := e.encoding()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(e.cfg.Campaign.Recipients)
	if err != nil {
		return nil, &InputError{fmt.Errorf("campaign.recipients: %w", err)}
	}
	defer f.Close()
	c, err := recipients.Check(f, enc)
	if err != nil {
		return nil, e.fileError(err)
	}
	return c, nil
}

// sameFile refuses a campaign planned from other content than the
// recipients file has now (stamp: the file's; zero to read it here).
// Campaigns stored before stamps were kept are not checked.
func (e *Engine) sameFile(c queue.Campaign, stamp *recipients.Stamp) error {
	if c.Source == "" {
		return nil
	}
	if stamp == nil {
		f, err := os.Open(e.cfg.Campaign.Recipients)
		if err != nil {
			return &InputError{fmt.Errorf("campaign.recipients: %w", err)}
		}
		st, err := recipients.StampOf(f)
		f.Close()
		if err != nil {
			return &InputError{fmt.Errorf("campaign.recipients: %w", err)}
		}
		stamp = &st
	}
	if stamp.String() == c.Source {
		return nil
	}
	was := c.Source
	if st, err := recipients.ParseStamp(c.Source); err == nil {
		was = st.Describe()
	}
	state := "was planned"
	if !c.Planned {
		state = "was being planned (and was interrupted)"
	}
	return &InputError{fmt.Errorf("campaign %s %s from %s as it was then (%s); the file has changed since (now %s).\n"+
		"A campaign is planned from one version of its file: resumed, it would still send to the rows planned then, even those taken out since, and not to rows added since. "+
		"To finish the campaign as planned, put the file back as it was. "+
		"To send to the file as it is now, give campaign.id a new value (the recipients the first campaign reached would get the message again: "+
		"take them out of the file; herald report lists them)",
		c.ID, state, e.cfg.Campaign.Recipients, was, stamp.Describe())}
}
