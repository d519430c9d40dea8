// `kubectl-octopus`: the `octopus` main under the name kubectl looks for on PATH, so
// `kubectl octopus list` works as a plugin.

include!("../main.rs");
