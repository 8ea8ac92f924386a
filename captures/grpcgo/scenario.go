// Command scenario runs one grpc-go scenario (server and client in one process,
// talking over 127.0.0.1) for recording h2scope test captures. record.py drives it.
//
// Built in GOPATH mode against Debian's grpc-go 1.33 (golang-google-grpc-dev) and
// golang-github-golang-protobuf-1-5-dev; no protoc plugin: the service is registered by
// hand with a grpc.ServiceDesc and uses wrapperspb.StringValue for every message.
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o scenario scenario.go
//	./scenario -port 50052 -scenario unary_ok
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const svc = "gotest.Echo"

// echoServer is the (empty) handler type of the hand-written service descriptor.
type echoServer interface{}

type server struct{}

// Unary: request "sleep=DUR" sleeps DUR (ignoring the context, like a handler that does
// not check its deadline), then echoes the request.
func unaryHandler(srv interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	if d, ok := param(in.Value, "sleep"); ok {
		time.Sleep(d)
	}
	log.Printf("server: Unary(%q) returns (ctx err: %v)", in.Value, ctx.Err())
	return wrapperspb.String("echo:" + in.Value), nil
}

// ServerStream: request "n=N,every=DUR" sends N messages, DUR apart.
// Request "tick=DUR,for=DUR" instead sends one message per tick of a time.Ticker for the
// whole duration, never looking at the stream's context and not stopping when a send
// fails (a handler that ignores its deadline and cancellation entirely).
func serverStreamHandler(srv interface{}, stream grpc.ServerStream) error {
	in := new(wrapperspb.StringValue)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	if tick, ok := param(in.Value, "tick"); ok {
		total, _ := param(in.Value, "for")
		return tickerStream(stream, tick, total)
	}
	n := 5
	if s, ok := rawParam(in.Value, "n"); ok {
		n, _ = strconv.Atoi(s)
	}
	every, _ := param(in.Value, "every")
	for i := 0; i < n; i++ {
		if i > 0 && every > 0 {
			time.Sleep(every)
		}
		if err := stream.SendMsg(wrapperspb.String(fmt.Sprintf("item %d", i))); err != nil {
			log.Printf("server: ServerStream send %d: %v", i, err)
			return err
		}
	}
	log.Printf("server: ServerStream sent %d messages", n)
	return nil
}

func tickerStream(stream grpc.ServerStream, tick, total time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	end := time.After(total)
	ok, failed := 0, 0
	var firstErr error
	for i := 0; ; i++ {
		select {
		case <-end:
			log.Printf("server: ticker stream done after %v: %d sends ok, %d failed (first error: %v; ctx err: %v)",
				total, ok, failed, firstErr, stream.Context().Err())
			return nil
		case <-t.C:
		}
		if err := stream.SendMsg(wrapperspb.String(fmt.Sprintf("tick %d", i))); err != nil {
			if firstErr == nil {
				firstErr = err
				log.Printf("server: ticker stream send %d failed: %v", i, err)
			}
			failed++
		} else {
			ok++
		}
	}
}

// Bidi: echoes every message until the client half-closes (or the stream dies).
func bidiHandler(srv interface{}, stream grpc.ServerStream) error {
	n := 0
	for {
		in := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(in); err != nil {
			log.Printf("server: Bidi after %d messages: %v", n, err)
			if err == io.EOF {
				return nil
			}
			return err
		}
		n++
		if err := stream.SendMsg(wrapperspb.String("re:" + in.Value)); err != nil {
			log.Printf("server: Bidi send after %d messages: %v", n, err)
			return err
		}
	}
}

var desc = grpc.ServiceDesc{
	ServiceName: svc,
	HandlerType: (*echoServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: unaryHandler}},
	Streams: []grpc.StreamDesc{
		{StreamName: "ServerStream", Handler: serverStreamHandler, ServerStreams: true},
		{StreamName: "Bidi", Handler: bidiHandler, ServerStreams: true, ClientStreams: true},
	},
	Metadata: "none",
}

func rawParam(s, key string) (string, bool) {
	for _, kv := range strings.Split(s, ",") {
		if p := strings.SplitN(kv, "=", 2); len(p) == 2 && p[0] == key {
			return p[1], true
		}
	}
	return "", false
}

func param(s, key string) (time.Duration, bool) {
	v, ok := rawParam(s, key)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	return d, err == nil
}

// ---- client side ----

type client struct {
	conn *grpc.ClientConn
}

func (c *client) unary(ctx context.Context, req string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := c.conn.Invoke(ctx, "/"+svc+"/Unary", wrapperspb.String(req), out)
	return out.Value, err
}

func (c *client) stream(ctx context.Context, i int, method string) (grpc.ClientStream, error) {
	return c.conn.NewStream(ctx, &desc.Streams[i], "/"+svc+"/"+method)
}

func code(err error) string { return status.Code(err).String() }

func main() {
	port := flag.Int("port", 50052, "TCP port on 127.0.0.1")
	scenario := flag.String("scenario", "unary_ok", "scenario name")
	flag.Parse()
	log.SetFlags(log.Lmicroseconds)

	addr := fmt.Sprintf("127.0.0.1:%d", *port)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(&desc, server{})
	served := make(chan struct{})
	go func() { srv.Serve(lis); close(served) }()

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	conn, err := grpc.DialContext(dctx, addr, grpc.WithInsecure(), grpc.WithBlock())
	dcancel()
	if err != nil {
		log.Fatal(err)
	}
	c := &client{conn}

	if err := run(*scenario, c, srv, served); err != nil {
		log.Printf("scenario %s: FAILED: %v", *scenario, err)
		conn.Close()
		os.Exit(1)
	}
	conn.Close()
	// let the client's close reach the wire first, so the teardown is client-initiated
	time.Sleep(100 * time.Millisecond)
	srv.Stop() // no-op if the scenario already stopped it
	<-served
	log.Printf("scenario %s: done", *scenario)
}

func run(name string, c *client, srv *grpc.Server, served chan struct{}) error {
	switch name {
	case "unary_ok":
		for i := 0; i < 2; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := c.unary(ctx, fmt.Sprintf("hello %d", i))
			cancel()
			log.Printf("client: Unary -> %q %s", v, code(err))
			if err != nil {
				return err
			}
		}
	case "deadline_unary":
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := c.unary(ctx, "sleep=500ms")
		cancel()
		log.Printf("client: Unary -> %s (%v)", code(err), err)
		if code(err) != "DeadlineExceeded" {
			return fmt.Errorf("want DeadlineExceeded, got %v", err)
		}
		// keep the connection open until the handler has returned (and longer), so the
		// capture shows what the server puts on the wire after the deadline: nothing.
		time.Sleep(700 * time.Millisecond)
	case "cancel_stream":
		ctx, cancel := context.WithCancel(context.Background())
		st, err := c.stream(ctx, 1, "Bidi")
		if err != nil {
			return err
		}
		var wg sync.WaitGroup
		wg.Add(1)
		var recvd int32
		var rerr error
		go func() {
			defer wg.Done()
			for {
				m := new(wrapperspb.StringValue)
				if rerr = st.RecvMsg(m); rerr != nil {
					return
				}
				atomic.AddInt32(&recvd, 1)
			}
		}()
		// Send as fast as possible; cancel() once the server is busy echoing (20 echoes
		// received), so both directions have data in flight when the reset goes out.
		sent := 0
		for ; sent < 1500 && atomic.LoadInt32(&recvd) < 20; sent++ {
			if err := st.SendMsg(wrapperspb.String(fmt.Sprintf("msg %04d", sent))); err != nil {
				break
			}
		}
		cancel()
		wg.Wait()
		log.Printf("client: sent %d, received %d, then cancel(): %s", sent, recvd, code(rerr))
		if code(rerr) != "Canceled" {
			return fmt.Errorf("want Canceled, got %v", rerr)
		}
		time.Sleep(300 * time.Millisecond)
	case "graceful_stop":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.stream(ctx, 0, "ServerStream")
		if err != nil {
			return err
		}
		if err := st.SendMsg(wrapperspb.String("n=6,every=100ms")); err != nil {
			return err
		}
		if err := st.CloseSend(); err != nil {
			return err
		}
		stopped := make(chan struct{})
		n := 0
		var rerr error
		for {
			m := new(wrapperspb.StringValue)
			if rerr = st.RecvMsg(m); rerr != nil {
				break
			}
			n++
			if n == 2 {
				go func() {
					log.Printf("server: GracefulStop()")
					srv.GracefulStop()
					log.Printf("server: GracefulStop() returned")
					close(stopped)
				}()
			}
		}
		log.Printf("client: ServerStream got %d messages, end: %v", n, rerr)
		<-stopped
		if rerr != io.EOF || n != 6 {
			return fmt.Errorf("want 6 messages and OK, got %d %v", n, rerr)
		}
		time.Sleep(200 * time.Millisecond)
	case "hard_stop":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		go func() {
			time.Sleep(200 * time.Millisecond)
			log.Printf("server: Stop()")
			srv.Stop()
		}()
		_, err := c.unary(ctx, "sleep=1s")
		log.Printf("client: Unary -> %s (%v)", code(err), err)
		if code(err) != "Unavailable" {
			return fmt.Errorf("want Unavailable, got %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	case "deadline_stream":
		// 250 ms deadline on a server stream whose handler sends every 20 ms for 2 s and
		// ignores its context: what goes on the wire at and after the deadline.
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		st, err := c.stream(ctx, 0, "ServerStream")
		if err != nil {
			return err
		}
		if err := st.SendMsg(wrapperspb.String("tick=20ms,for=2s")); err != nil {
			return err
		}
		if err := st.CloseSend(); err != nil {
			return err
		}
		n := 0
		for {
			m := new(wrapperspb.StringValue)
			if err = st.RecvMsg(m); err != nil {
				break
			}
			n++
		}
		log.Printf("client: ServerStream got %d messages, then %s (%v) after %v", n, code(err),
			err, time.Since(start))
		if code(err) != "DeadlineExceeded" {
			return fmt.Errorf("want DeadlineExceeded, got %v", err)
		}
		// keep the connection open past the handler's 2 s loop (and its return), so the
		// capture shows everything the server writes after the deadline
		time.Sleep(2300 * time.Millisecond)
	case "server_stream_ok":
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := c.stream(ctx, 0, "ServerStream")
		if err != nil {
			return err
		}
		if err := st.SendMsg(wrapperspb.String("n=5,every=10ms")); err != nil {
			return err
		}
		if err := st.CloseSend(); err != nil {
			return err
		}
		n := 0
		for {
			m := new(wrapperspb.StringValue)
			if err = st.RecvMsg(m); err != nil {
				break
			}
			n++
		}
		log.Printf("client: ServerStream got %d messages, end: %v", n, err)
		if err != io.EOF || n != 5 {
			return fmt.Errorf("want 5 messages and OK, got %d %v", n, err)
		}
	default:
		return errors.New("unknown scenario " + name)
	}
	return nil
}
