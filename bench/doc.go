// Package bench holds herald's benchmarks: Go benchmarks of the per-message
// costs (go test -bench . ./bench/, benchstat-ready) and campaign.sh, the
// whole-campaign comparison with Postfix's smtp-source against smtp-sink.
package bench
