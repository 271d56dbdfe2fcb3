// Package templates parses a campaign's templates once and renders them per
// recipient: the subject and the text part with text/template, the HTML part
// with html/template (so CSV values are escaped), all with missingkey=error
// and the function set documented on Funcs. It does no I/O: callers load the
// files.
package templates
