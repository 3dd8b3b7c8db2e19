package pgtest

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on loopback that a test can make misbehave the way
// a network does: Freeze stops moving bytes on the connections open at
// that moment without closing them (a partition, or a peer that died
// without a word), while new connections work.
type Proxy struct {
	Addr string // host:port to connect to

	delay atomic.Int64 // nanoseconds added before each server reply

	loseMu    sync.Mutex
	losePat   []byte        // see LoseReplyTo
	loseFired chan struct{} // closed when the reply was lost

	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  []*proxyConn
	closed bool
	wg     sync.WaitGroup
}

type proxyConn struct {
	client, server net.Conn
	frozen         chan struct{}
	once           sync.Once
	loseReply      atomic.Bool // drop the server's next reply and cut the connection
}

// NewProxy forwards a loopback port to target and stops when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pc := &proxyConn{client: c, server: s, frozen: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.conns = append(p.conns, pc)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(pc, c, s, false)
		go p.pipe(pc, s, c, true)
	}
}

func (p *Proxy) pipe(pc *proxyConn, from, to net.Conn, fromServer bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if d := time.Duration(p.delay.Load()); fromServer && n > 0 && d > 0 {
			time.Sleep(d)
		}
		select {
		case <-pc.frozen:
			// Swallow everything until the proxy is closed.
			if err != nil {
				return
			}
			continue
		default:
		}
		if n > 0 && fromServer && pc.loseReply.Load() {
			// The server answered what the client sent last: the client
			// never hears of it. The channel is closed before the cut, so a
			// client that sees the cut also sees the channel closed.
			p.loseMu.Lock()
			close(p.loseFired)
			p.loseMu.Unlock()
			pc.client.Close()
			pc.server.Close()
			return
		}
		if n > 0 && !fromServer {
			p.loseMu.Lock()
			if p.losePat != nil && bytes.Contains(buf[:n], p.losePat) {
				p.losePat = nil
				pc.loseReply.Store(true)
			}
			p.loseMu.Unlock()
		}
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				to.Close()
			} else if tc, ok := to.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

// SetDelay makes every reply from the server arrive d later: the latency
// of a database across a network.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// LoseReplyTo arms a one-shot fault: the next message from a client that
// contains pattern reaches the server, which acts on it, but its reply
// never reaches the client: the connection is cut when the reply comes.
// A COMMIT sent that way commits, and the client cannot know. The
// returned channel is closed when the reply was lost.
func (p *Proxy) LoseReplyTo(pattern []byte) <-chan struct{} {
	p.loseMu.Lock()
	defer p.loseMu.Unlock()
	p.losePat = bytes.Clone(pattern)
	p.loseFired = make(chan struct{})
	return p.loseFired
}

// Freeze stops every connection open now from passing bytes, without
// closing it. Connections made afterwards are not affected.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.conns {
		pc.once.Do(func() { close(pc.frozen) })
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for _, pc := range p.conns {
		pc.client.Close()
		pc.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
