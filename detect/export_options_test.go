package detect

// ErrGRPCOff is what Accept returns on a Mux child listener for GRPC with the Detector's GRPC
// mode off.
var ErrGRPCOff = errGRPCOff
