package nodelink_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aeriemq/aerie/nodelink"
)

// echoServer is a node answering OpClientsList with one client and
// OpSessionDiscard with a 409.
func echoServer() *nodelink.Server {
	srv := nodelink.NewServer()
	srv.Handle(nodelink.OpClientsList, func(_ context.Context, inst string, _ json.RawMessage) (any, error) {
		return []nodelink.ClientInfo{{ClientID: "c-of-" + inst, Username: "u"}}, nil
	})
	srv.Handle(nodelink.OpSessionDiscard, func(context.Context, string, json.RawMessage) (any, error) {
		return nil, nodelink.Errorf(http.StatusConflict, "online")
	})
	return srv
}

// The node serves requests only to the holder of the secret derived
// (HMAC-SHA256) from its token: the control plane, which keeps only the
// token secret's SHA-256, derives the same secret; anything else is 401.
func TestRequestPathHTTPAuth(t *testing.T) {
	const token = "aen_n-1_s3cr3t-part"
	srv := httptest.NewServer(nodelink.ServerHandler(echoServer(), nodelink.SecretFromToken(token)))
	t.Cleanup(srv.Close)
	stored := sha256.Sum256([]byte("s3cr3t-part")) // what the control plane keeps
	if nodelink.Secret(stored[:]) != nodelink.SecretFromToken(token) {
		t.Fatal("the two sides derive different secrets")
	}
	call := func(hash []byte) ([]nodelink.ClientInfo, error) {
		c := &nodelink.HTTP{Resolve: func(context.Context, string) (string, []byte, error) { return srv.URL, hash, nil }}
		return nodelink.Nodes{Caller: c}.Clients(context.Background(), "n-1", "i-1")
	}
	got, err := call(stored[:])
	if err != nil || len(got) != 1 || got[0].ClientID != "c-of-i-1" {
		t.Fatalf("with the right secret: %v %+v", err, got)
	}
	wrong := sha256.Sum256([]byte("another-secret"))
	var ne *nodelink.Error
	if _, err := call(wrong[:]); !errors.As(err, &ne) || ne.Status != http.StatusUnauthorized {
		t.Fatalf("with a wrong secret: %v, want a 401 refusal", err)
	}
	for name, auth := range map[string]string{"none": "", "the token itself": "Bearer " + token, "basic": "Basic " + nodelink.SecretFromToken(token)} {
		rq, _ := http.NewRequest(http.MethodPost, srv.URL+nodelink.Path+nodelink.OpClientsList, strings.NewReader(`{"instance_id":"i-1"}`))
		if auth != "" {
			rq.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, resp.StatusCode)
		}
	}
	// A node without a secret serves no one.
	open := httptest.NewServer(nodelink.ServerHandler(echoServer(), ""))
	t.Cleanup(open.Close)
	c := &nodelink.HTTP{Resolve: func(context.Context, string) (string, []byte, error) { return open.URL, nil, nil }}
	if _, err := (nodelink.Nodes{Caller: c}).Clients(context.Background(), "n-1", "i-1"); !errors.As(err, &ne) || ne.Status != http.StatusUnauthorized {
		t.Fatalf("node without a secret: %v, want 401", err)
	}
	// A node's refusal keeps its status.
	if _, err := (nodelink.Nodes{Caller: &nodelink.HTTP{Resolve: func(context.Context, string) (string, []byte, error) { return srv.URL, stored[:], nil }}}).
		DiscardSession(context.Background(), "n-1", "i-1", "c"); !errors.As(err, &ne) || ne.Status != http.StatusConflict {
		t.Fatalf("refusal: %v, want 409", err)
	}
}

// A node that cannot be reached was sent nothing (ErrNoNode); one that
// took the request and did not answer leaves the outcome unknown
// (ErrNoAnswer). HTTP publish depends on telling them apart.
func TestRequestPathFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	c := &nodelink.HTTP{Resolve: func(context.Context, string) (string, []byte, error) { return closed, []byte("h"), nil }}
	if _, err := (nodelink.Nodes{Caller: c}).Publish(context.Background(), "n-1", nodelink.Publish{ID: "p", InstanceID: "i"}); !errors.Is(err, nodelink.ErrNoNode) {
		t.Fatalf("closed port: %v, want ErrNoNode", err)
	}
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // took it …
		select {                           // … and says nothing
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(stop) })
	c = &nodelink.HTTP{Resolve: func(context.Context, string) (string, []byte, error) { return hang.URL, []byte("h"), nil },
		Client: &http.Client{Timeout: 300 * time.Millisecond}}
	_, err = (nodelink.Nodes{Caller: c}).Publish(context.Background(), "n-1", nodelink.Publish{ID: "p", InstanceID: "i"})
	if !errors.Is(err, nodelink.ErrNoAnswer) || errors.Is(err, nodelink.ErrNoNode) {
		t.Fatalf("silent node: %v, want ErrNoAnswer only", err)
	}
	// In process: another node than this one is unreachable.
	local := &nodelink.Local{NodeID: "n-1", Server: echoServer()}
	if _, err := (nodelink.Nodes{Caller: local}).Clients(context.Background(), "n-2", "i"); !errors.Is(err, nodelink.ErrNoNode) {
		t.Fatalf("local call to another node: %v", err)
	}
	got, err := nodelink.Nodes{Caller: local}.Clients(context.Background(), "n-1", "i-9")
	if err != nil || len(got) != 1 || got[0].ClientID != "c-of-i-9" {
		t.Fatalf("local call: %v %+v", err, got)
	}
}
