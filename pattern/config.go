package pattern

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
)

// configErrors collects the [*ConfigError] values of one configuration
// type, whose name qualifies every field.
type configErrors struct {
	typ  string
	errs []error
}

// bad records that field is invalid, for the reason format describes.
func (e *configErrors) bad(field, format string, args ...any) {
	e.errs = append(e.errs, &ConfigError{Field: e.typ + "." + field, Reason: fmt.Sprintf(format, args...)})
}

// err joins the recorded errors; nil when there are none.
func (e *configErrors) err() error { return errors.Join(e.errs...) }

// failureCodes fills in DefaultFailureCodes when *c is empty and records a
// set that contains OK or Canceled (caller cancellation is always neutral).
func (e *configErrors) failureCodes(c *Codes) {
	orDefault(c, DefaultFailureCodes)
	if c.Has(codes.OK) || c.Has(codes.Canceled) {
		e.bad("FailureCodes", "%v contains OK or Canceled; caller cancellation is always neutral", *c)
	}
}

// orDefault sets *v to def when *v is the zero value: in every config of
// this package a zero field takes its default.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
