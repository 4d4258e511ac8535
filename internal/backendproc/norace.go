//go:build !race

package backendproc

const raceEnabled = false
