package sink

import (
	"time"

	"github.com/emersion/go-smtp"
)

// The replies of the random faults (Faults.RcptTemp and the like).
var (
	errRcptTemp = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	errRcptPerm = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errDataTemp = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	errDataPerm = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message refused"}
)

// The independent streams of draws: one per decision point.
const (
	streamRcpt uint64 = iota + 1
	streamDataCmd
	streamDataEnd
)

// draw is the nth number of a stream, uniform in [0, 1): a hash of the
// seed, the stream and n (splitmix64), so that it needs no lock and does
// not depend on which session asks first.
func draw(seed int64, stream uint64, n int64) float64 {
	x := uint64(seed) ^ stream*0x9e3779b97f4a7c15
	x += uint64(n) * 0xd1b54a32d192ed03
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// latency is the delay before the reply at a stage.
func (f *Faults) latency(stage Stage) time.Duration {
	if d, ok := f.Latencies[stage]; ok {
		return d
	}
	if stage == StageGreeting || stage == StageAuth {
		return 0
	}
	return f.Latency
}

func (ss *session) drop() { _ = ss.conn.Close() }
