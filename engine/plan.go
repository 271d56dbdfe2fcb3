package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/recipients"
	"github.com/heraldmail/herald/schedule"
	"github.com/heraldmail/herald/templates"
)

// Problem is a recipient row that will not be sent, with its line number;
// or, with Warning, a row that is planned but may not be sent.
type Problem struct {
	Line    int
	Reason  string
	Warning bool
}

func (p Problem) String() string {
	if p.Warning {
		return fmt.Sprintf("line %d: warning: %s", p.Line, p.Reason)
	}
	return fmt.Sprintf("line %d: %s", p.Line, p.Reason)
}

// PlanResult counts what planning did.
type PlanResult struct {
	Rows       int  // data rows read (valid or not)
	Invalid    int  // rows reported as problems (bad address, field count, ...)
	Duplicates int  // rows whose address appeared earlier
	Added      int  // jobs enqueued by this plan
	Existing   int  // jobs already enqueued by an earlier, interrupted plan
	Suppressed int  // of Added, addresses on the suppression list
	Resumed    bool // the campaign was planned before: nothing was read
	// ContentChanged: the campaign existed with other content (templates,
	// sender, attachments, retry settings); it was replaced, and messages
	// not yet sent use the new content.
	ContentChanged bool
}

// scan streams the recipients file: it checks the templates against the
// header and the first valid row before fn sees any row, and reports every
// invalid row to problem. With known (what checkFile took), the file
// must still be what was checked: rows come only from blocks of it found
// as they were, and a file that changed (rewritten, cut short, added to)
// is an error when the scan reaches the first block that differs.
func (e *Engine) scan(ctx context.Context, known *recipients.Checked, problem func(Problem), fn func(recipients.Row) error) (header []string, res PlanResult, err error) {
	f, err := os.Open(e.cfg.Campaign.Recipients)
	if err != nil {
		return nil, res, &InputError{fmt.Errorf("campaign.recipients: %w", err)}
	}
	defer f.Close()
	enc, err := e.encoding()
	if err != nil {
		return nil, res, err
	}
	var in io.Reader = f
	if known != nil {
		in = known.Reader(f)
	}
	changed := func(err error) bool { return known != nil && errors.Is(err, recipients.ErrChanged) }
	rd, err := recipients.NewEncodedReader(in, enc)
	if changed(err) {
		return nil, res, e.changedWhilePlanned(known)
	}
	if err != nil {
		return nil, res, e.fileError(err)
	}
	header = rd.Header()
	rd.HeaderFields = sortedHeaderIndexes(header, e.content.set.SubjectFields())
	zoneCol := -1
	if col := e.content.zoneColumn; col != "" {
		if zoneCol = slices.Index(header, col); zoneCol < 0 {
			return header, res, &InputError{fmt.Errorf("campaign.schedule.timezone_column: %q is not a column of %s (columns: %s)", col, e.cfg.Campaign.Recipients, strings.Join(header, ", "))}
		}
	}
	checked := false
	for {
		if err := ctx.Err(); err != nil {
			return header, res, err
		}
		row, err := rd.Next()
		if err == io.EOF {
			break
		}
		var rerr *recipients.RowError
		if errors.As(err, &rerr) {
			res.Rows++
			res.Invalid++
			problem(Problem{Line: rerr.Line, Reason: rerr.Reason})
			continue
		}
		if err != nil {
			// The file cannot be read to its end (a row that cannot be
			// split, a line not in its encoding, a read failure): never
			// go on with rows unread.
			if changed(err) {
				return header, res, e.changedWhilePlanned(known)
			}
			return header, res, e.fileError(err)
		}
		res.Rows++
		if zoneCol >= 0 && zoneCol < len(row.Fields) && row.Fields[zoneCol] != "" {
			if _, err := schedule.LoadZone(row.Fields[zoneCol]); err != nil {
				res.Invalid++
				problem(Problem{Line: row.Line, Reason: fmt.Sprintf("%s (column %s, campaign.schedule.timezone_column)", err, e.content.zoneColumn)})
				continue
			}
		}
		if !checked {
			if err := e.preflight(header, row); err != nil {
				return header, res, err
			}
			checked = true
		}
		if recipients.NeedsSMTPUTF8(row.Email) {
			problem(Problem{Line: row.Line, Warning: true, Reason: needsSMTPUTF8(row.Email)})
		}
		if err := fn(row); err != nil {
			return header, res, err
		}
	}
	if !checked {
		// No valid row: still check the templates against the header.
		if err := e.content.set.Check(header, nil); err != nil {
			return header, res, &InputError{fmt.Errorf("templates do not fit %s:\n%w", e.cfg.Campaign.Recipients, err)}
		}
	}
	return header, res, nil
}

// Plan validates the recipients and enqueues one job per valid, unique
// address. Planning a campaign that was planned before reads no row and
// sets Resumed; planning one that was interrupted while planning adds only
// what is missing. Either is refused when the file is no longer the one
// the campaign was planned from (sameFile). Nothing is enqueued when the
// templates do not fit, or when the file cannot be read to its end.
func (e *Engine) Plan(ctx context.Context, problem func(Problem)) (res PlanResult, err error) {
	return e.PlanStarting(ctx, problem, nil)
}

// PlanStarting is Plan, calling started (when not nil) once the campaign
// exists in the queue with its content, its templates checked against the
// first row, while the rest of the file is planned: a run may deliver
// from then on (RunPlanning). It is not called when the campaign was
// planned before, nor when planning fails before that point.
func (e *Engine) PlanStarting(ctx context.Context, problem func(Problem), started func()) (res PlanResult, err error) {
	id := e.cfg.Campaign.ID
	existing, err := e.q.Campaign(ctx, id)
	if err == nil {
		if err := e.sameList(existing); err != nil {
			return PlanResult{}, err
		}
	}
	if err == nil && existing.Planned {
		if err := e.sameFile(existing, nil); err != nil {
			return PlanResult{}, err
		}
		// Templates may have changed since: check them against the header.
		if err := e.checkHeader(ctx, existing.Header); err != nil {
			return PlanResult{}, err
		}
		changed, err := e.storeSpec(ctx, id)
		return PlanResult{Resumed: true, ContentChanged: changed}, err
	}
	if err != nil && !errors.Is(err, queue.ErrNoCampaign) {
		return PlanResult{}, err
	}
	// Read the whole file first: nothing is planned from a file that
	// cannot be read to its end.
	checked, ferr := e.checkFile()
	if ferr != nil {
		return PlanResult{}, ferr
	}
	stamp := checked.Stamp
	if err == nil {
		if err := e.sameFile(existing, &stamp); err != nil {
			return PlanResult{}, err
		}
	}
	var batch []queue.Job
	batchSize := 1000
	if p, ok := e.q.(queue.EnqueuePreparer); ok {
		batchSize = p.EnqueueBatch()
	}
	now := time.Now()
	created := false
	// One batch is enqueued while the next is read: the queue's work
	// and the file's overlap. The batches still go in one after the
	// other, so a later one sees the keys of an earlier one.
	type enqueued struct {
		r   queue.EnqueueResult
		err error
	}
	var inflight chan enqueued
	collect := func() error {
		if inflight == nil {
			return nil
		}
		done := <-inflight
		inflight = nil
		if done.err != nil {
			return fmt.Errorf("enqueue: %w", done.err)
		}
		r := done.r
		res.Added += r.Added
		res.Existing += r.Existing
		res.Suppressed += r.Suppressed
		for _, d := range r.Duplicates {
			res.Duplicates++
			problem(Problem{Line: int(d.Seq), Reason: fmt.Sprintf("duplicate of line %d, not sent twice", d.FirstSeq)})
		}
		return nil
	}
	// After an error: the batch on its way is done, and counted in res,
	// before Plan returns.
	defer collect()
	flush := func() error {
		if len(batch) == 0 {
			return collect()
		}
		b := batch
		batch = make([]queue.Job, 0, cap(b))
		run := func(ctx context.Context) (queue.EnqueueResult, error) { return e.q.Enqueue(ctx, id, b) }
		if p, ok := e.q.(queue.EnqueuePreparer); ok {
			// This batch is prepared while the one before is stored.
			r, err := p.PrepareEnqueue(ctx, id, b)
			if err != nil {
				return fmt.Errorf("enqueue: %w", err)
			}
			run = r
		}
		if err := collect(); err != nil {
			return err
		}
		inflight = make(chan enqueued, 1)
		go func(ch chan<- enqueued) {
			r, err := run(ctx)
			ch <- enqueued{r, err}
		}(inflight)
		return nil
	}
	header, scanned, err := e.scan(ctx, checked, problem, func(row recipients.Row) error {
		if !created {
			// The campaign record is created only once the templates
			// were checked against the first row.
			c, err := e.q.CreateCampaign(ctx, queue.Campaign{ID: id, Header: row.Header(), Created: now, Status: queue.Active, Spec: e.spec.Encode(), List: SuppressionList(e.spec.From), Source: stamp.String()})
			if err != nil {
				return err
			}
			if err := e.sameList(c); err != nil {
				return err
			}
			if err := e.sameFile(c, &stamp); err != nil {
				return err
			}
			if !slices.Equal(c.Header, row.Header()) {
				return &InputError{fmt.Errorf("campaign %s was planned from a file with the columns %s; %s has %s: use a new campaign.id for a different file",
					id, strings.Join(c.Header, ","), e.cfg.Campaign.Recipients, strings.Join(row.Header(), ","))}
			}
			if res.ContentChanged, err = e.storeSpec(ctx, id); err != nil {
				return err
			}
			created = true
			if started != nil {
				started()
			}
		}
		j := queue.Job{Seq: uint64(row.Line), Key: row.Key, Email: row.Email, Fields: row.Fields, Enqueued: now}
		if sp := row.Span; sp.Size > 0 && sp.Size <= math.MaxUint32 {
			j.Row = queue.RowRef{Offset: uint64(sp.Offset), Size: uint32(sp.Size), Sum: sp.Sum}
		}
		batch = append(batch, j)
		if len(batch) >= batchSize {
			return flush()
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if err := flush(); err != nil {
		return res, err
	}
	if err := collect(); err != nil {
		return res, err
	}
	res.Rows, res.Invalid = scanned.Rows, scanned.Invalid
	if !created {
		c, err := e.q.CreateCampaign(ctx, queue.Campaign{ID: id, Header: header, Created: now, Status: queue.Active, Spec: e.spec.Encode(), List: SuppressionList(e.spec.From), Source: stamp.String()})
		if err != nil {
			return res, err
		}
		if err := e.sameFile(c, &stamp); err != nil {
			return res, err
		}
	}
	if err := e.q.MarkPlanned(ctx, id); err != nil {
		return res, err
	}
	return res, nil
}

// sameList refuses a campaign.from whose domain is not the one the campaign
// was planned with: the suppression list, hard bounces, bounce processing
// and unsubscribe links all name that domain's list.
func (e *Engine) sameList(c queue.Campaign) error {
	if now := SuppressionList(e.spec.From); c.List != "" && c.List != now {
		return &InputError{fmt.Errorf("campaign %s was planned to be sent from %s (its suppression list); campaign.from is now at %s: use a new campaign.id for another sending domain", c.ID, c.List, now)}
	}
	return nil
}

// storeSpec stores the configured campaign's content with the campaign
// when it differs from what is stored, and says whether it did.
func (e *Engine) storeSpec(ctx context.Context, id string) (bool, error) {
	stored, err := e.q.Spec(ctx, id)
	if err != nil {
		return false, err
	}
	spec := e.spec.Encode()
	if bytes.Equal(stored, spec) {
		return false, nil
	}
	changed := stored != nil
	if old, err := DecodeSpec(stored); err == nil && changed {
		old.Recipients = e.spec.Recipients // where the file is is not content
		changed = !bytes.Equal(old.Encode(), spec)
	}
	return changed, e.q.SetSpec(ctx, id, spec)
}

// checkHeader checks the templates against a stored header.
func (e *Engine) checkHeader(_ context.Context, header []string) error {
	if err := e.content.set.Check(header, nil); err != nil {
		return &InputError{fmt.Errorf("templates do not fit the campaign's recipients:\n%w", err)}
	}
	return nil
}

// DryRun plans and renders every row without touching the queue or the
// network; problems are reported as in Plan, plus rows that fail to render.
func (e *Engine) DryRun(ctx context.Context, problem func(Problem)) (PlanResult, error) {
	var r templates.Renderer
	keys := map[string]int{} // a dry run may hold every key: it sends nothing
	var res PlanResult
	now := time.Now()
	_, scanned, err := e.scan(ctx, nil, problem, func(row recipients.Row) error {
		if first, dup := keys[row.Key]; dup {
			res.Duplicates++
			problem(Problem{Line: row.Line, Reason: fmt.Sprintf("duplicate of line %d, not sent twice", first)})
			return nil
		}
		keys[row.Key] = row.Line
		// Not signed: the key was tried once when the campaign was loaded,
		// and a dry run of a large campaign need not pay a signature each.
		text, err := e.content.comp.compose(&r, templates.Data(row.Header(), row.Fields), row.Email, row.Key, now)
		if tl := (*templates.TooLargeError)(nil); errors.As(err, &tl) {
			res.Invalid++
			problem(Problem{Line: row.Line, Reason: e.content.tooLarge(0)})
			return nil
		}
		if err != nil {
			res.Invalid++
			problem(Problem{Line: row.Line, Reason: "cannot render: " + err.Error()})
			return nil
		}
		if size, ok := newMessage(text).within(e.content.maxSize); !ok {
			res.Invalid++
			problem(Problem{Line: row.Line, Reason: e.content.tooLarge(size)})
			return nil
		}
		res.Added++
		return nil
	})
	res.Rows, res.Invalid = scanned.Rows, scanned.Invalid+res.Invalid
	return res, err
}

// preflight checks the templates against the header and the first valid
// row, and that row's whole message against campaign.max_message_size,
// before anything is sent: a template that makes every message too large
// stops the campaign here, not at every recipient.
func (e *Engine) preflight(header []string, row recipients.Row) error {
	if err := e.content.set.Check(header, row.Fields); err != nil {
		if tl := (*templates.TooLargeError)(nil); errors.As(err, &tl) {
			return e.firstTooLarge(row.Line, 0)
		}
		return &InputError{fmt.Errorf("templates do not fit %s:\n%w", e.cfg.Campaign.Recipients, err)}
	}
	var r templates.Renderer
	msg, err := e.content.comp.build(&r, templates.Data(row.Header(), row.Fields), row.Email, row.Key, time.Now())
	if err != nil {
		// Another failure to build (a signature) is the message's, and
		// reported when it is sent.
		return nil
	}
	if size, ok := msg.within(e.content.maxSize); !ok {
		return e.firstTooLarge(row.Line, size)
	}
	return nil
}

func (e *Engine) firstTooLarge(line int, size int64) error {
	return &InputError{fmt.Errorf("%s: line %d, the first recipient: %s; nothing was sent (make the message smaller, or raise the limit)",
		e.cfg.Campaign.Recipients, line, e.content.tooLarge(size))}
}

// needsSMTPUTF8 warns of an address with a local part that is not ASCII.
func needsSMTPUTF8(email string) string {
	return fmt.Sprintf("%s: the part before @ is not ASCII; it is sent only through a server that offers SMTPUTF8 (RFC 6531), and fails (not retried) through one that does not", email)
}

// Preview writes the n-th valid recipient's message (1-based) as RFC 5322
// text.
func (e *Engine) Preview(ctx context.Context, n int, w io.Writer) error {
	if n < 1 {
		return &InputError{fmt.Errorf("--row %d: rows count from 1", n)}
	}
	// The whole file, as planning would read it: a preview of a file
	// that cannot be sent would mislead.
	known, err := e.checkFile()
	if err != nil {
		return err
	}
	var r templates.Renderer
	i := 0
	errFound := errors.New("found")
	_, _, err = e.scan(ctx, known, func(Problem) {}, func(row recipients.Row) error {
		if i++; i < n {
			return nil
		}
		if err := e.WriteMessage(&r, row.Header(), row.Fields, w); err != nil {
			return &InputError{fmt.Errorf("line %d: %w", row.Line, err)}
		}
		return errFound
	})
	if err == errFound {
		return nil
	}
	if err != nil {
		return err
	}
	return &InputError{fmt.Errorf("--row %d: the file has %d valid recipients", n, i)}
}

// WriteMessage renders and writes one recipient's message (fields in the
// order of header, which must hold "email") as RFC 5322 text. r holds the
// caller's buffers; WriteMessage is otherwise safe for concurrent use.
func (e *Engine) WriteMessage(r *templates.Renderer, header, fields []string, w io.Writer) error {
	data := templates.Data(header, fields)
	email := data[recipients.EmailColumn]
	msg, err := e.content.comp.build(r, data, email, strings.ToLower(email), time.Now())
	if err != nil {
		return err
	}
	_, err = msg.WriteTo(w)
	return err
}
