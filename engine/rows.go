package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/recipients"
)

// A queue may keep a job's place in the recipients file instead of its
// fields (queue.Job.Row; the embedded queue does, so that a campaign of a
// million costs the store tens of bytes a recipient, not its row). The
// leaser reads those rows back before a job goes to a sender, in file
// order and one read for rows that follow each other, and checks each
// against the checksum taken when it was planned: a file changed since
// never sends one recipient's fields to another.

// rowGap is how many bytes between two rows are read through rather than
// read apart (rows left out as invalid or duplicate).
const rowGap = 4 << 10

// maxRead bounds one read of rows that follow each other.
const maxRead = 1 << 20

// RowChangedError says a job's row is no longer in the recipients file as
// it was planned: the file changed since.
type RowChangedError struct {
	File string
	Line uint64 // the row's line (the job's Seq)
	Why  string
}

func (e *RowChangedError) Error() string {
	return fmt.Sprintf("%s: line %d is not the row the campaign was planned from (%s): the file changed since; nothing was sent to it. "+
		"Put the file back as it was, then herald resume; to send to the file as it is now, give campaign.id a new value",
		e.File, e.Line, e.Why)
}

// readRows fills in the Fields of the jobs that have only a Row, reading
// them from path (the campaign's recipients file, header its columns).
// It fails on the first row that does not match.
func readRows(path string, header []string, jobs []queue.Job) error {
	var need []int
	for i := range jobs {
		if jobs[i].Fields == nil {
			need = append(need, i)
		}
	}
	if len(need) == 0 {
		return nil
	}
	for _, i := range need {
		if jobs[i].Row.Size == 0 {
			return fmt.Errorf("job %d (line %d) has neither its fields nor its place in the recipients file: the store is damaged", jobs[i].Seq, jobs[i].Seq)
		}
	}
	if path == "" {
		return fmt.Errorf("the campaign's recipients file is not known (planned by an older herald?): its rows cannot be read back; run herald send with its configuration")
	}
	email := slices.Index(header, recipients.EmailColumn)
	slices.SortFunc(need, func(a, b int) int {
		x, y := jobs[a].Row.Offset, jobs[b].Row.Offset
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("campaign.recipients: %w (the campaign's rows are read from it as they are sent)", err)
	}
	defer f.Close()
	var buf []byte
	for i := 0; i < len(need); {
		first := jobs[need[i]].Row
		start, end := first.Offset, first.Offset+uint64(first.Size)
		k := i + 1
		for ; k < len(need); k++ {
			r := jobs[need[k]].Row
			if r.Offset < end || r.Offset-end > rowGap || r.Offset+uint64(r.Size)-start > maxRead {
				break
			}
			end = r.Offset + uint64(r.Size)
		}
		buf = slices.Grow(buf[:0], int(end-start))[:end-start]
		n, err := f.ReadAt(buf, int64(start))
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("campaign.recipients: %w", err)
		}
		buf = buf[:n]
		for ; i < k; i++ {
			j := &jobs[need[i]]
			from, to := j.Row.Offset-start, j.Row.Offset-start+uint64(j.Row.Size)
			if to > uint64(len(buf)) {
				return &RowChangedError{File: path, Line: j.Seq, Why: "the file is shorter"}
			}
			sp := recipients.Span{Offset: int64(j.Row.Offset), Size: int(j.Row.Size), Sum: j.Row.Sum}
			fields, err := recipients.ReadSpan(buf[from:to], sp, len(header), email)
			if err != nil {
				return &RowChangedError{File: path, Line: j.Seq, Why: "its bytes differ"}
			}
			if fields[email] != j.Email {
				return &RowChangedError{File: path, Line: j.Seq, Why: fmt.Sprintf("its address is not %s", j.Email)}
			}
			j.Fields = fields
		}
	}
	return nil
}
