package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/rebound-grpc/rebound/internal/faultserver"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	name := flag.String("name", "backend", "name put in every reply")
	flag.Parse()

	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...) // unbuffered: survives SIGKILL
	}
	srv, err := faultserver.Listen(*addr, faultserver.Options{
		Name: *name,
		OnAttempt: func(c faultserver.Call) {
			id := c.ID
			if id == "" {
				id = "-"
			}
			say("ATTEMPT %s %s", id, c.Method)
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(2)
	}
	say("READY %s", srv.Addr)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "SET":
			var f faultserver.Fault
			if err := json.Unmarshal([]byte(arg), &f); err != nil {
				say("ERR %v", err)
				continue
			}
			srv.Set(f)
		case "GOAWAY":
			srv.GoAway()
		case "RESET":
			srv.ResetAll()
		default:
			say("ERR unknown command %q", cmd)
			continue
		}
		say("ACK")
	}
	srv.Stop()
}
