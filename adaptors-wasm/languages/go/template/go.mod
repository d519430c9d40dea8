// The module name is fixed: the bindings that `wit-bindgen go` generates at build time
// import each other as wit_component/<package>.
module wit_component

go 1.27.1

require go.bytecodealliance.org/pkg v0.4.0

// The bindings' runtime module. No Go module proxy is needed: build.sh copies it from the
// wit-bindgen-go crate source (where wit-bindgen ships it) into third_party/pkg.
replace go.bytecodealliance.org/pkg => ./third_party/pkg
