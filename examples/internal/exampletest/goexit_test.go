package exampletest

import "runtime"

func runtimeGoexit() { runtime.Goexit() }
