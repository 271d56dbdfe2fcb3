package boltq

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heraldmail/herald/queue"
)

// The outcome journal makes a settlement durable against a crash of the
// process the moment it is known: Note copies it into a segment file
// beside the store (<store>.outcomes.<n>), mapped shared, so that the
// record is in the kernel's page cache, which outlives the process, once
// the copy is done, without a system call (on Linux, where the file's
// blocks are allocated up front; elsewhere, or where the file cannot be
// mapped, Note writes it with write(2), in group writes; see journal),
// well before the batch that Settle commits (and fsyncs) it in. Open
// applies every settlement still in the segments before it returns the
// leases of a dead process to pending, so a message the server took just
// before kill -9 is not sent again. The journal also holds the leases
// (leases.go): a grant record for each batch Lease hands out, a release
// record for jobs given back. A segment is removed once every settlement
// in it was committed by Settle and every lease granted in it has ended,
// and no earlier segment is left with a grant one of its releases ends;
// Settle fsyncs the current segment before it commits, so a power loss
// costs no more than the settle window.
//
// A record is: the payload's length and its CRC-32C (4 bytes each, little
// endian), the payload. A record torn by the crash fails its length or CRC
// and ends the replay of its segment; so does a length of 0, which is
// where the records of a mapped segment end (its file is longer than what
// was written, and zero there).

const (
	segmentMax = 4 << 20 // bytes before a new segment is started
	// segmentMap is the length a segment is mapped at first: the new
	// segment is started at the next commit after segmentMax, and the
	// mapping grows when commits lag further behind.
	segmentMap = segmentMax + 1<<20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// outcomeKey names one settlement in the journal; or, with grant set,
// a grant of leases, whose segment write reports there.
type outcomeKey struct {
	campaign   string
	seq, lease uint64
	grant      *grantWrite
}

// grantWrite is a grant record on its way to a segment: n leases, which
// the segment holds until each is settled, released or granted again
// (segment.pending); seg is where it landed.
type grantWrite struct {
	n   int
	seg *segment
	// ends: the segments of the grants this record ends (a release, n
	// 0) or supersedes (a grant again of an expired lease). A segment
	// they stay in keeps the one this record lands in (segment.held):
	// without it, a replay of the older grant would count a job given
	// back among the jobs a dead process held.
	ends []*segment
}

// leaseKey names one lease within its campaign: a job and its token.
type leaseKey struct{ seq, lease uint64 }

// noteRef is where a job's noted settlement is (journal.noted), and its
// lease.
type noteRef struct {
	lease uint64
	seg   *segment
}

type segment struct {
	n       int
	f       *os.File
	m       []byte // the file, mapped shared while it is the current segment; nil: written with write(2)
	size    int64  // bytes of records
	pending int    // settlements noted here and not yet committed, leases granted here still held, and earlier segments whose held name this one
	// held: the later segments with release records of leases granted
	// here; each counts this one in its pending until it is removed.
	held    []*segment
	removed bool
}

type journal struct {
	base string // <store>.outcomes
	// mapf maps a segment's file (mapFile); an error leaves the segment
	// to write(2).
	mapf func(f *os.File, size int) ([]byte, error)

	mu   sync.Mutex
	segs []*segment // the last one is written to
	// noted: the segment that holds each settlement noted and not yet
	// committed, by campaign and job. A note or a commit looks its
	// campaign up once for all its settlements. Of two notes on one job,
	// the one of the later lease stands (the other's lease was lost: its
	// Settle will be refused).
	noted  map[string]map[uint64]noteRef
	broken error // a failed write: Note refuses from then on

	// A segment that is not mapped is written with write(2). Notes that
	// arrive while one is being written wait together and go in the
	// next write(2), which the first of them makes (a group write):
	// senders finishing messages at the same moment cost one system
	// call, not one each. A note returns once its own record is
	// written. A mapped segment takes the note's record under the lock.
	wrote   *sync.Cond // on mu: a write ended
	writing bool
	queued  []byte       // records waiting for the next write
	keys    []outcomeKey // theirs
	spare   []byte       // a buffer written before, for reuse
	spareK  []outcomeKey // likewise
	last    uint64       // records queued so far
	written uint64       // of which written
}

func segmentName(base string, n int) string { return base + "." + strconv.Itoa(n) }

// segments lists the journal's segment numbers, oldest first.
func segments(base string) ([]int, error) {
	names, err := filepath.Glob(base + ".*")
	if err != nil {
		return nil, err
	}
	var ns []int
	for _, name := range names {
		if n, err := strconv.Atoi(strings.TrimPrefix(name, base+".")); err == nil && n >= 0 {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns, nil
}

// openJournal starts a fresh segment after the ones at base (which the
// caller has replayed and removed).
func openJournal(base string, next int) (*journal, error) {
	return newJournal(base, next, mapFile)
}

func newJournal(base string, next int, mapf func(*os.File, int) ([]byte, error)) (*journal, error) {
	j := &journal{base: base, mapf: mapf, noted: map[string]map[uint64]noteRef{}}
	j.wrote = sync.NewCond(&j.mu)
	if err := j.rotate(next); err != nil {
		return nil, err
	}
	return j, nil
}

// rotate starts segment n, mapped where the system allows it; the
// segment it follows is no longer written and is unmapped.
func (j *journal) rotate(n int) error {
	f, err := os.OpenFile(segmentName(j.base, n), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("outcome journal: %w", err)
	}
	// The new file's name is on disk before anything in it counts.
	if d, err := os.Open(filepath.Dir(j.base)); err == nil {
		d.Sync()
		d.Close()
	}
	if len(j.segs) > 0 {
		j.segs[len(j.segs)-1].unmap()
	}
	seg := &segment{n: n, f: f}
	if m, err := j.mapf(f, segmentMap); err == nil {
		seg.m = m
	}
	j.segs = append(j.segs, seg)
	return nil
}

// grow maps more of the current segment, a mapped one, so that n more
// bytes fit; the caller holds j.mu.
func (s *segment) grow(n int, mapf func(*os.File, int) ([]byte, error)) error {
	size := max(2*len(s.m), int(s.size)+n)
	m, err := mapf(s.f, size)
	if err != nil {
		return err
	}
	unmapFile(s.m)
	s.m = m
	return nil
}

// unmap ends the mapping of a segment no longer written, and cuts the
// file to its records.
func (s *segment) unmap() {
	if s.m == nil {
		return
	}
	unmapFile(s.m)
	s.m = nil
	_ = s.f.Truncate(s.size)
}

// note appends s to the current segment: copied in at once when the
// segment is mapped, else in the next group write, which note waits for.
func (j *journal) note(campaign string, s queue.Settlement) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(); err != nil {
		return err
	}
	j.queued = appendRecord(j.queued, campaign, s)
	j.keys = append(j.keys, outcomeKey{campaign: campaign, seq: s.Seq, lease: s.Lease})
	return j.flush()
}

// grant records that the leases first, first+1, ... are granted on
// seqs, in that order, before the jobs are handed out: Open returns
// those of a process that died to pending. It returns the segment that
// holds the record until every one of them is settled, released or
// granted again (journal.drop). ends are the segments of earlier grants of
// the same jobs that this one supersedes (grantWrite.ends).
func (j *journal) grant(campaign string, first uint64, seqs []uint64, ends []*segment) (*segment, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(); err != nil {
		return nil, err
	}
	w := &grantWrite{n: len(seqs), ends: ends}
	j.queued = appendGrant(j.queued, campaign, first, seqs)
	j.keys = append(j.keys, outcomeKey{campaign: campaign, grant: w})
	if err := j.flush(); err != nil {
		return nil, err
	}
	return w.seg, nil
}

// release records that leases were given back (Release): a process that
// dies after it did not hold them. segs are their grants' segments,
// which no longer hold them.
func (j *journal) release(campaign string, leases []leaseKey, segs []*segment) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.dropLocked(segs)
	if err := j.usable(); err != nil {
		return err
	}
	j.queued = appendRelease(j.queued, campaign, leases)
	// A grant of none: the record keeps its segment only while a grant
	// it ends is in an earlier one (write).
	j.keys = append(j.keys, outcomeKey{campaign: campaign, grant: &grantWrite{ends: segs}})
	if err := j.flush(); err != nil {
		return err
	}
	// Leases taken and given back while nothing is settled (every
	// provider refuses) are what tidies the journal then.
	j.tidy()
	return nil
}

// drop forgets grants whose leases ended without a settlement (granted
// again): their segments no longer hold them.
func (j *journal) drop(segs []*segment) {
	if len(segs) == 0 {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.dropLocked(segs)
}

func (j *journal) dropLocked(segs []*segment) {
	for _, s := range segs {
		if s != nil {
			s.pending--
		}
	}
}

func (j *journal) usable() error {
	if j.broken != nil {
		return j.broken
	}
	if len(j.segs) == 0 {
		return errors.New("outcome journal: closed")
	}
	return nil
}

// flush writes what is queued, the record just queued among it, before it
// returns: at once in a mapped segment, else in a group write, which it
// makes or waits for; the caller holds j.mu.
func (j *journal) flush() error {
	j.last++
	mine := j.last
	if !j.writing && j.segs[len(j.segs)-1].m != nil {
		j.write()
		return j.broken
	}
	for j.written < mine {
		if j.broken != nil {
			return j.broken
		}
		if j.writing {
			j.wrote.Wait()
			continue
		}
		j.write()
	}
	return nil
}

// write writes the queued records to the current segment and accounts
// for them there; the caller holds j.mu. A mapped segment takes them in a
// copy under the lock; another one in a write(2) outside it.
func (j *journal) write() {
	buf, keys, upto := j.queued, j.keys, j.last
	j.queued, j.keys = j.spare[:0], j.spareK[:0]
	cur := j.segs[len(j.segs)-1]
	var err error
	if cur.m != nil {
		if int(cur.size)+len(buf) > len(cur.m) {
			err = cur.grow(len(buf), j.mapf)
		}
		if err == nil {
			err = copyIn(cur.m[cur.size:], buf)
		}
	} else {
		j.writing = true
		j.mu.Unlock()
		_, err = cur.f.WriteAt(buf, cur.size)
		j.mu.Lock()
		j.writing = false
		defer j.wrote.Broadcast()
	}
	if err != nil {
		j.broken = fmt.Errorf("outcome journal: %w", err)
		return
	}
	cur.size += int64(len(buf))
	var (
		c  map[uint64]noteRef // campaign cc's: most often the one before's
		cc string
	)
	for _, k := range keys {
		if k.grant != nil {
			k.grant.seg = cur
			cur.pending += k.grant.n
			for _, s := range k.grant.ends {
				if s == nil || s == cur || s.removed || len(s.held) > 0 && s.held[len(s.held)-1] == cur {
					continue
				}
				s.held = append(s.held, cur)
				cur.pending++
			}
			continue
		}
		if c == nil || k.campaign != cc {
			cc = k.campaign
			if c = j.noted[k.campaign]; c == nil {
				c = map[uint64]noteRef{}
				j.noted[k.campaign] = c
			}
		}
		if old, ok := c[k.seq]; ok {
			if k.lease < old.lease {
				continue // a lost lease's, after the later one's
			}
			old.seg.pending-- // noted again: the later record stands
		}
		cur.pending++
		c[k.seq] = noteRef{k.lease, cur}
	}
	j.written = upto
	j.spare, j.spareK = buf, keys
}

// copyIn copies b into m, a mapped segment. A fault there (the file was
// cut under the mapping, a disk that fails the page) is an error that
// breaks the journal, not a crash of the process.
func copyIn(m, b []byte) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if recover() != nil {
			err = errors.New("a page of the mapped segment could not be written (its file was cut, or the disk failed)")
		}
	}()
	copy(m, b)
	return nil
}

// sync puts the current segment on disk: Settle calls it before it
// commits, so that what the store then says (the jobs past its frontier,
// the outcomes it holds) never runs ahead of the grants and notes that
// a power loss must find in the journal. Records after the sync are the
// next commit's.
func (j *journal) sync() {
	j.mu.Lock()
	var f *os.File
	if len(j.segs) > 0 {
		f = j.segs[len(j.segs)-1].f
	}
	j.mu.Unlock()
	if f != nil {
		// Outside the lock: senders noting outcomes do not wait for it.
		// A segment rotated away meanwhile was synced when it was.
		f.Sync()
	}
}

// committed forgets settlements Settle has committed, and the grants of
// their leases (grants: their segments), removes segments that hold
// nothing uncommitted, and starts a new segment when the current one is
// large.
func (j *journal) committed(campaign string, batch []queue.Settlement, grants ...*segment) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.dropLocked(grants)
	if len(j.segs) == 0 {
		return
	}
	if c := j.noted[campaign]; c != nil {
		for _, s := range batch {
			if n, ok := c[s.Seq]; ok && n.lease == s.Lease {
				n.seg.pending--
				delete(c, s.Seq)
			}
		}
		if len(c) == 0 {
			delete(j.noted, campaign)
		}
	}
	j.tidy()
}

// tidy starts a new segment when the current one is large, and removes
// the segments that hold nothing needed any more; the caller holds j.mu.
func (j *journal) tidy() {
	cur := j.segs[len(j.segs)-1]
	// Not while a group write is on its way to the current segment: it
	// would land in the segment left behind, after its sync below. The
	// next commit starts the new one.
	if cur.size > segmentMax && j.broken == nil && !j.writing {
		// The segment left behind may hold uncommitted records: on disk
		// before a new one starts.
		cur.f.Sync()
		if err := j.rotate(cur.n + 1); err != nil {
			j.broken = err
		}
	}
	cur = j.segs[len(j.segs)-1]
	j.segs = slices.DeleteFunc(j.segs, func(s *segment) bool {
		if s == cur || s.pending > 0 {
			return false
		}
		s.unmap()
		s.f.Close()
		s.remove(j.base)
		return true
	})
}

// remove deletes the segment's file, which frees the later segments it
// held (they come after it in journal.segs, oldest first).
func (s *segment) remove(base string) {
	os.Remove(segmentName(base, s.n))
	s.removed = true
	for _, h := range s.held {
		h.pending--
	}
	s.held = nil
}

// uncommitted counts the settlements noted and not yet committed.
func (j *journal) uncommitted() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, c := range j.noted {
		n += len(c)
	}
	return n
}

// close removes the segments when everything noted was committed, and
// keeps them otherwise (the next Open applies them).
func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, s := range j.segs {
		s.unmap()
		if s.pending > 0 {
			s.f.Sync() // for the next Open, after a power loss too
		}
		s.f.Close()
		if s.pending == 0 {
			s.remove(j.base)
		}
	}
	j.segs = nil
}

// The kinds of record, in the top bits of the length word: a settlement
// (0, the only kind before store format 2), a grant of leases, a release
// of leases. A herald of store format 1 reads a length past its limit in
// a record of the other kinds, and stops its replay there: such a
// journal is never left to it (checkFormat).
const (
	kindShift   = 30
	kindSettle  = 0
	kindGrant   = 1
	kindRelease = 2
	lengthMask  = 1<<kindShift - 1
)

// entry is one record of the journal, of one of the kinds.
type entry struct {
	kind     int
	campaign string
	s        queue.Settlement // kindSettle
	leases   []leaseKey       // kindGrant, kindRelease: (seq, lease) each
}

func appendRecord(b []byte, campaign string, s queue.Settlement) []byte {
	// The header (length and CRC) is filled in once the payload is in
	// place: one buffer, no copy of the payload.
	head := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	b = appendString(b, campaign)
	b = binary.AppendUvarint(b, s.Seq)
	b = binary.AppendUvarint(b, s.Lease)
	flags := byte(0)
	if s.CountAttempt {
		flags |= 1
	}
	if s.Suppress {
		flags |= 2
	}
	b = append(b, byte(s.State), flags)
	b = binary.AppendVarint(b, unixNano(s.At))
	b = binary.AppendVarint(b, unixNano(s.SentAt))
	b = appendString(b, s.Provider)
	b = appendString(b, s.Reply)
	return sealRecord(b, head, kindSettle)
}

// appendGrant appends a grant: the campaign, how many, the first lease,
// and the seqs, each as its difference from the one before (zigzag);
// the leases follow each other from the first.
func appendGrant(b []byte, campaign string, first uint64, seqs []uint64) []byte {
	head := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	b = appendString(b, campaign)
	b = binary.AppendUvarint(b, uint64(len(seqs)))
	b = binary.AppendUvarint(b, first)
	prev := uint64(0)
	for _, seq := range seqs {
		b = binary.AppendVarint(b, int64(seq-prev))
		prev = seq
	}
	return sealRecord(b, head, kindGrant)
}

// appendRelease appends a release: the campaign, how many, and each
// (seq, lease).
func appendRelease(b []byte, campaign string, leases []leaseKey) []byte {
	head := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	b = appendString(b, campaign)
	b = binary.AppendUvarint(b, uint64(len(leases)))
	for _, l := range leases {
		b = binary.AppendUvarint(b, l.seq)
		b = binary.AppendUvarint(b, l.lease)
	}
	return sealRecord(b, head, kindRelease)
}

// sealRecord fills in the header of the record that starts at head.
func sealRecord(b []byte, head, kind int) []byte {
	p := b[head+8:]
	binary.LittleEndian.PutUint32(b[head:], uint32(len(p))|uint32(kind)<<kindShift)
	binary.LittleEndian.PutUint32(b[head+4:], crc32.Checksum(p, crcTable))
	return b
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

var errTorn = errors.New("torn record")

// readRecord reads one record; io.EOF at a clean end, errTorn for a record
// the crash cut short or garbled.
func readRecord(r *bufio.Reader) (e entry, err error) {
	var head [8]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		if err == io.EOF {
			return e, io.EOF
		}
		return e, errTorn
	}
	word := binary.LittleEndian.Uint32(head[:4])
	n := word & lengthMask
	e.kind = int(word >> kindShift)
	if word == 0 {
		return e, io.EOF // the end of a mapped segment's records
	}
	if n == 0 || n > 1<<24 || e.kind > kindRelease {
		return e, errTorn
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return e, errTorn
	}
	if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(head[4:]) {
		return e, errTorn
	}
	d := decoder{b: p}
	e.campaign = d.string()
	switch e.kind {
	case kindSettle:
		s := &e.s
		s.Seq, s.Lease = d.uvarint(), d.uvarint()
		state, flags := d.byte(), d.byte()
		s.State, s.CountAttempt, s.Suppress = queue.State(state), flags&1 != 0, flags&2 != 0
		s.At, s.SentAt = fromUnixNano(d.varint()), fromUnixNano(d.varint())
		s.Provider, s.Reply = d.string(), d.string()
	case kindGrant:
		count, lease := d.uvarint(), d.uvarint()
		if count > uint64(len(d.b)) {
			return e, errTorn
		}
		e.leases = make([]leaseKey, count)
		seq := uint64(0)
		for i := range e.leases {
			seq += uint64(d.varint())
			e.leases[i] = leaseKey{seq, lease + uint64(i)}
		}
	case kindRelease:
		count := d.uvarint()
		if count > uint64(len(d.b)) {
			return e, errTorn
		}
		e.leases = make([]leaseKey, count)
		for i := range e.leases {
			e.leases[i] = leaseKey{d.uvarint(), d.uvarint()}
		}
	}
	if d.err != nil || len(d.b) != 0 && e.kind != kindSettle {
		return e, errTorn
	}
	return e, nil
}

// replayOutcomes applies what the journal's segments hold (a process
// died, or closed while it held leases) in one transaction: each
// settlement whose lease is the last the journal granted on its job (or,
// in a journal of store format 1, which has no grants, whose lease the
// store holds), in the order noted; then each job granted and neither
// settled nor released goes back to pending (recovered). It returns the
// segments' numbers; the caller removes them once the transaction is
// committed.
func (q *Queue) replayOutcomes(tx *bolt.Tx, base string) (applied, recovered int, segs []int, err error) {
	segs, err = segments(base)
	if err != nil {
		return 0, 0, nil, err
	}
	type replay struct {
		batch  []queue.Settlement
		where  []byte
		grants map[uint64]uint64 // seq: the last lease granted and not yet ended
		last   uint64            // the highest lease granted
	}
	camps := map[string]*replay{}
	var order []string
	of := func(id string) *replay {
		r := camps[id]
		if r == nil {
			r = &replay{grants: map[uint64]uint64{}}
			camps[id] = r
			order = append(order, id)
		}
		return r
	}
	for _, n := range segs {
		f, err := os.Open(segmentName(base, n))
		if err != nil {
			return applied, recovered, segs, fmt.Errorf("outcome journal: %w", err)
		}
		br := bufio.NewReader(f)
		for {
			e, err := readRecord(br)
			if err != nil {
				break // the end, or a record the crash tore: nothing after it was acknowledged
			}
			r := of(e.campaign)
			switch e.kind {
			case kindGrant:
				for _, l := range e.leases {
					r.grants[l.seq] = l.lease
					r.last = max(r.last, l.lease)
				}
			case kindRelease:
				// A release ends its lease and every earlier grant of the
				// job (their leases ended before it was granted), which
				// may be all the journal still has of it: the first
				// grant's segment stays while the later ones go.
				for _, l := range e.leases {
					if g, ok := r.grants[l.seq]; ok && g <= l.lease {
						delete(r.grants, l.seq)
					}
				}
			case kindSettle:
				where := byte(whereLegacy)
				if g, ok := r.grants[e.s.Seq]; ok {
					if g != e.s.Lease {
						continue // a lease granted again since
					}
					where = whereStored
					delete(r.grants, e.s.Seq)
				}
				r.batch = append(r.batch, e.s)
				r.where = append(r.where, where)
			}
		}
		f.Close()
	}
	for _, id := range order {
		r := camps[id]
		_, n, err := q.settleTx(tx, id, r.batch, r.where)
		if errors.Is(err, queue.ErrNoCampaign) {
			continue // the campaign was removed since
		}
		if err != nil {
			return applied, recovered, segs, fmt.Errorf("outcome journal: campaign %s: %w", id, err)
		}
		applied += n
		n, err = recoverGrants(tx, id, r.grants, r.last)
		if err != nil {
			return applied, recovered, segs, fmt.Errorf("outcome journal: campaign %s: %w", id, err)
		}
		recovered += n
	}
	return applied, recovered, segs, nil
}

// recoverGrants returns to pending the jobs a dead process held (grants:
// seq to lease) that the store does not show settled with that lease, and
// stores last as the campaign's last lease token where it is later.
func recoverGrants(tx *bolt.Tx, id string, grants map[uint64]uint64, last uint64) (int, error) {
	b := tx.Bucket(campaignBucket(id))
	if b == nil {
		return 0, nil
	}
	c := openCampaign(b)
	if last > u64(c.meta.Get(keyLease)) {
		if err := c.meta.Put(keyLease, be(last)); err != nil {
			return 0, err
		}
	}
	seqs := slices.Sorted(maps.Keys(grants))
	n := 0
	for _, seq := range seqs {
		j, found, err := c.find(seq)
		if err != nil {
			return n, err
		}
		if !found || j.Lease >= grants[seq] {
			continue // settled with it (a settlement not noted)
		}
		switch j.State {
		case queue.Pending:
			if err := c.pend(be(seq)); err != nil {
				return n, err
			}
		case queue.Retry: // its timer is there
		default:
			continue
		}
		n++
	}
	return n, nil
}

// Note makes one settlement durable against a crash of this process at
// once (engine.Journal); Settle commits it later in a batch.
func (q *Queue) Note(campaign string, s queue.Settlement) error {
	if q.journal == nil {
		return errors.New("outcome journal: not open")
	}
	return q.journal.note(campaign, s)
}
