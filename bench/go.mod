module github.com/sniffsplice/sniff/bench

go 1.26.0

replace github.com/sniffsplice/sniff => ../

require (
	github.com/pires/go-proxyproto v0.15.0
	github.com/sniffsplice/sniff v0.0.0-00010101000000-000000000000
	github.com/soheilhy/cmux v0.1.5
)

require (
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
