// Package queue defines the job queue contract shared by every backend: one
// job per recipient, its states, leases and settlements, the campaign record,
// the suppression list and per-provider usage for daily quotas.
//
// Backends live in sub-packages (boltq: embedded, the default); the
// conformance suite every backend must pass lives in queuetest.
//
// A job's life:
//
//	pending → leased(until) → sent | retry(at) | failed | suppressed | cancelled
//
// A lease that expires returns the job to the pool. A job is settled right
// after the server's reply to the end of DATA; that window is the only place
// a duplicate can come from.
package queue
