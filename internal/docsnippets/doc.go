// Package docsnippets holds the compiled sources of the Go blocks in the
// root module's Markdown (README.md and docs/): each block is a copy of a
// function or declaration in this package's tests, named by the
// <!-- snippet: ... --> line before it, and internal/doccheck fails when a
// block and its source differ. The examples with an Output comment run.
package docsnippets
