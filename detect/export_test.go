package detect

// ParseHelloRecords is ParseClientHello without its in-place fast path:
// the record-crossing parser on every input, so that the tests can check
// that both decide alike.
func ParseHelloRecords(b []byte, info *TLSInfo) Verdict {
	if v := recordStart(b); v != Match {
		return v
	}
	return parseHelloRecords(b, info)
}
