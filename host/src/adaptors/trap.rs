//! Wording of wasm traps for operators: shared by loading an adaptor (its `describe`)
//! and by the supervisor's calls.

use crate::engine::StoreState;

/// Words a trap the way an operator needs to read it.
pub fn describe_trap(err: &wasmtime::Error, state: &StoreState) -> String {
    if let Some(why) = state.limit_refusal() {
        return why.to_owned();
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            "deadline exceeded: the call ran past its time limit".into()
        }
        Some(wasmtime::Trap::StackOverflow) => "stack overflow".into(),
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "the adaptor panicked (wasm `unreachable` executed); see its stderr in the limb log"
                .into()
        }
        Some(t) => format!("wasm trap: {t}"),
        // A host call's refusal: its own words first, the wasm backtrace wasmtime wraps
        // around it after them, so a short display still shows why.
        None => {
            let root = err.root_cause().to_string();
            let full = format!("{err:#}");
            let text = if full.starts_with(&root) {
                full
            } else {
                format!("{root} ({full})")
            };
            crate::bounds::truncate(&text, 512).into_owned()
        }
    }
}
