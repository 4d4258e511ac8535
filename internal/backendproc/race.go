//go:build race

package backendproc

const raceEnabled = true
