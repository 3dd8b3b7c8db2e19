// Package usage counts what each key does, per minute, and writes the
// counts to the key store in batches, losing nothing it can keep.
//
// The request path only adds to an in-memory count (one shard lock, no
// global lock, no store query). A flush, every FlushInterval, takes the
// counts out as one batch with a random id and writes it; a batch that
// fails stays pending and is written again, with the same id, until the
// store takes it, so a batch whose commit was lost with the connection is
// recognised by the store and not counted twice. While a batch is
// pending, new counts keep adding up in memory (one row per key and
// minute however long the outage), bounded by MaxBuffered rows: past it,
// requests that would need a new row are dropped and counted, never
// silently.
package usage

import (
	"context"
	"crypto/rand"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
)

// Writer is where batches go: the key store.
type Writer interface {
	WriteUsage(ctx context.Context, b *keystore.UsageBatch) (applied bool, err error)
}

// Config tunes a Recorder.
type Config struct {
	// FlushInterval is how often counts are written; a process killed
	// outright loses at most this much. Default: 10s.
	FlushInterval time.Duration
	// MaxBuffered bounds the rows (one per key and minute) held in
	// memory, written or not. Default: 1,000,000.
	MaxBuffered int64
	// WriteTimeout bounds one batch write. Default: 10s.
	WriteTimeout time.Duration
	// Logger receives failed writes (the first of an outage, then one a
	// minute), the recovery, and dropped requests (at most one line a
	// minute). Default: none.
	Logger *zap.Logger
}

// Defaults.
const (
	DefaultFlushInterval = 10 * time.Second
	DefaultMaxBuffered   = 1_000_000
	DefaultWriteTimeout  = 10 * time.Second
)

func (c Config) withDefaults() Config {
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MaxBuffered <= 0 {
		c.MaxBuffered = DefaultMaxBuffered
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	return c
}

// Stats are a Recorder's counters, cumulative since it started.
type Stats struct {
	Recorded    atomic.Uint64 // requests counted
	Written     atomic.Uint64 // requests whose counts the store took
	Dropped     atomic.Uint64 // requests not counted: the buffer was full, or the store was down at Close
	Batches     atomic.Uint64 // batches the store took
	Duplicates  atomic.Uint64 // batches written again whose first write had committed
	WriteErrors atomic.Uint64 // failed batch writes (each retried)
}

const numShards = 64

type bucketKey struct {
	id     string
	minute int64 // Unix minutes
}

type entry struct {
	owner string
	last  int64 // Unix microseconds of the latest request
	keystore.UsageCounts
}

type shard struct {
	mu sync.Mutex
	m  map[bucketKey]*entry
	_  [40]byte // keep shards on separate cache lines
}

// pending is a batch taken out of memory and not yet written.
type pending struct {
	batch    *keystore.UsageBatch
	requests uint64
}

// Recorder aggregates usage and writes it. Safe for concurrent use.
type Recorder struct {
	w     Writer
	cfg   Config
	seed  maphash.Seed
	shard [numShards]shard
	rows  atomic.Int64 // rows in memory: in the shards and the pending batch
	Stats Stats

	flushMu sync.Mutex // one flush at a time
	pending *pending

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New starts a Recorder writing to w.
func New(w Writer, cfg Config) *Recorder {
	r := &Recorder{w: w, cfg: cfg.withDefaults(), seed: maphash.MakeSeed(), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range r.shard {
		r.shard[i].m = map[bucketKey]*entry{}
	}
	go r.loop()
	return r
}

// Record counts one request of key id (owned by owner) that ended at at
// with HTTP status code status, having read in request body bytes and
// written out response body bytes in latency.
func (r *Recorder) Record(id, owner string, at time.Time, status int, in, out int64, latency time.Duration) {
	k := bucketKey{id: id, minute: at.Unix() / 60}
	s := &r.shard[maphash.String(r.seed, id)%numShards]
	s.mu.Lock()
	e := s.m[k]
	if e == nil {
		if r.rows.Load() >= r.cfg.MaxBuffered {
			s.mu.Unlock()
			r.Stats.Dropped.Add(1)
			return
		}
		e = &entry{owner: owner}
		s.m[k] = e
		r.rows.Add(1)
	}
	e.Status[keystore.StatusClass(status)]++
	e.BytesIn += in
	e.BytesOut += out
	e.LatencyMicros += latency.Microseconds()
	if us := at.UnixMicro(); us > e.last {
		e.last = us
	}
	s.mu.Unlock()
	r.Stats.Recorded.Add(1)
}

// Buffered returns the rows held in memory, written or not.
func (r *Recorder) Buffered() int64 { return r.rows.Load() }

// logEvery is how often a continuing problem is logged again.
const logEvery = time.Minute

func (r *Recorder) loop() {
	defer close(r.done)
	t := time.NewTicker(r.cfg.FlushInterval)
	defer t.Stop()
	log := r.cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	var (
		failures      int
		lastFailLog   time.Time
		droppedLogged uint64
		lastDropLog   time.Time
	)
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.WriteTimeout)
		err := r.Flush(ctx)
		cancel()
		now := time.Now()
		switch {
		case err != nil:
			failures++
			if failures == 1 || now.Sub(lastFailLog) >= logEvery {
				lastFailLog = now
				log.Warn("usage counts not written yet; kept in memory and retried",
					zap.Int("attempts", failures), zap.Int64("rows_buffered", r.Buffered()), zap.Error(err))
			}
		case failures > 0:
			log.Info("usage counts written again", zap.Int("failed_attempts", failures))
			failures = 0
		}
		if dropped := r.Stats.Dropped.Load(); dropped > droppedLogged && now.Sub(lastDropLog) >= logEvery {
			log.Error("usage buffer full: requests not counted",
				zap.Uint64("dropped", dropped-droppedLogged), zap.Uint64("dropped_total", dropped),
				zap.Int64("max_buffered_rows", r.cfg.MaxBuffered))
			droppedLogged, lastDropLog = dropped, now
		}
	}
}

// Flush writes the pending batch, if any, then what was counted since.
// On error the batch stays pending, to be written again with the same id.
func (r *Recorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	if r.pending == nil {
		r.pending = r.take()
		if r.pending == nil {
			return nil
		}
	}
	if err := r.write(ctx); err != nil {
		return err
	}
	// A batch that was pending leaves counts behind it: write them too.
	if r.pending = r.take(); r.pending == nil {
		return nil
	}
	return r.write(ctx)
}

func (r *Recorder) write(ctx context.Context) error {
	p := r.pending
	applied, err := r.w.WriteUsage(ctx, p.batch)
	if err != nil {
		r.Stats.WriteErrors.Add(1)
		return err
	}
	if applied {
		r.Stats.Batches.Add(1)
	} else {
		r.Stats.Duplicates.Add(1)
	}
	r.Stats.Written.Add(p.requests)
	r.rows.Add(-int64(len(p.batch.Rows)))
	r.pending = nil
	return nil
}

// take moves every count out of the shards into a new batch (nil if
// there is none).
func (r *Recorder) take() *pending {
	b := &keystore.UsageBatch{LastUsed: map[string]time.Time{}}
	var requests uint64
	for i := range r.shard {
		s := &r.shard[i]
		s.mu.Lock()
		m := s.m
		if len(m) == 0 {
			s.mu.Unlock()
			continue
		}
		s.m = make(map[bucketKey]*entry, len(m))
		s.mu.Unlock()
		for k, e := range m {
			b.Rows = append(b.Rows, keystore.UsageRow{KeyID: k.id, Owner: e.owner, Minute: time.Unix(k.minute*60, 0).UTC(), UsageCounts: e.UsageCounts})
			requests += uint64(e.Requests())
			if last := time.UnixMicro(e.last); last.After(b.LastUsed[k.id]) {
				b.LastUsed[k.id] = last
			}
		}
	}
	if len(b.Rows) == 0 {
		return nil
	}
	if _, err := rand.Read(b.ID[:]); err != nil {
		panic("usage: no randomness for a batch id: " + err.Error())
	}
	return &pending{batch: b, requests: requests}
}

// ErrLost is returned by Close when counts could not be written before
// its context ended; they are counted in Stats.Dropped.
var ErrLost = errors.New("usage counts could not be written before shutdown and are lost")

// Close stops the flushes and writes what is left, retrying until ctx
// ends. Counts it could not write are added to Stats.Dropped and Close
// returns ErrLost.
func (r *Recorder) Close(ctx context.Context) error {
	r.once.Do(func() { close(r.stop) })
	<-r.done
	for {
		if r.Flush(ctx) == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			r.flushMu.Lock()
			lost := uint64(0)
			if r.pending != nil {
				lost += r.pending.requests
			}
			if rest := r.take(); rest != nil {
				lost += rest.requests
			}
			r.pending = nil
			r.rows.Store(0)
			r.flushMu.Unlock()
			r.Stats.Dropped.Add(lost)
			return ErrLost
		case <-time.After(250 * time.Millisecond):
		}
	}
}
