// Command backend serves internal/faultserver on one address and takes
// commands on stdin, one per line:
//
//	SET {json Fault}    apply the fault to the following attempts
//	GOAWAY              gracefully stop the serving grpc.Server (see faultserver.Server.GoAway)
//	RESET               close every client connection
//
// It prints "READY addr" once it listens, "ACK" after each command and
// "ATTEMPT id method" for every attempt received. It exits when stdin closes.
// It is run by internal/backendproc; nothing else uses it.
package main
