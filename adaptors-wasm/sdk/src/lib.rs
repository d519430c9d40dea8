//! The Rust SDK for Octopus adaptors: everything an adaptor would otherwise write again.
//!
//! An adaptor is a spec struct (`#[derive(Deserialize)]`), a type implementing
//! [`Device`] and one line, `octopus_adaptor_sdk::export_adaptor!(MyDevice);`. The SDK
//! generates the contract's bindings (`octopus:adaptor@0.1.3`, world `described-adaptor`), keeps
//! the one device of the component instance, turns serde errors into `invalid-spec`
//! messages naming the field, encodes status and snapshots as JSON, and maps
//! capability errors onto the contract's [`Error`] cases.
//!
//! ```
//! use octopus_adaptor_sdk::{Context, Device, Info, ModelInfo, Result, Settings};
//!
//! #[derive(serde::Deserialize)]
//! struct Spec { step: i64 }
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct State { count: i64 }
//!
//! struct Counter { step: i64, count: i64 }
//!
//! impl Device for Counter {
//!     type Spec = Spec;
//!     type Status = serde_json::Value;
//!     type State = State;
//!     fn describe() -> Info {
//!         Info::new("adaptors.example.com/counter", "0.1.0")
//!             .model(ModelInfo::new("devices.example.com/v1", "CounterDevice"))
//!     }
//!     fn configure(spec: Spec, _: &Context) -> Result<(Self, Settings)> {
//!         Ok((Counter { step: spec.step, count: 0 }, Settings::poll_every_ms(1000)))
//!     }
//!     fn poll(&mut self) -> Result<serde_json::Value> {
//!         self.count += self.step;
//!         Ok(serde_json::json!({ "count": self.count }))
//!     }
//!     fn snapshot(&self) -> State { State { count: self.count } }
//!     fn restore(&mut self, state: State) { self.count = state.count }
//! }
//!
//! octopus_adaptor_sdk::export_adaptor!(Counter);
//! ```
//!
//! [`duration`] and [`time`] parse Octopus's Go-style durations (`syncInterval: 1m30s`)
//! and format `updatedAt` timestamps; [`text`] writes numbers into a status string
//! without `core::fmt`, for adaptors that build their status by hand;
//! [`status::Property`] is the shared property shape.
//!
//! Everything but the export builds natively too, so adaptors unit-test their logic
//! with `cargo test` (drive a device through [`Instance`]); capabilities are then
//! absent (`not-permitted`), and logs, events and clocks go to the host process.

mod adaptor;
pub mod ble;
pub mod clock;
pub mod declare;
pub mod device;
pub mod duration;
mod error;
pub mod events;
pub mod gpio;
mod info;
mod json;
pub mod log;
mod runtime;
pub mod serial;
pub mod socket;
pub mod spec;
pub mod state;
pub mod status;
pub mod text;
pub mod time;
mod tracked;

#[doc(hidden)]
pub mod glue;

pub use adaptor::Adaptor;
pub use device::Device;
pub use error::{CapabilityError, Error, Result};
pub use info::{
    Context, DeviceIdentity, Info, Model, ModelInfo, Reference, ResourceField, ResourceKind,
    Settings,
};
pub use runtime::{DeviceConfig, Instance};
/// Re-exported so adaptors derive with the same serde the SDK decodes with.
pub use serde;
pub use serde_json;

/// The raw generated bindings of the contract, for anything the wrappers do not cover.
/// Generated here once (with a public export macro) so adaptor crates never run
/// `wit_bindgen::generate!` themselves.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "described-adaptor",
        pub_export_macro: true,
        default_bindings_module: "octopus_adaptor_sdk::bindings",
        // Adaptors that still run their own `generate!` link this crate too; distinct
        // section names keep the linker from merging the two type sections.
        type_section_suffix: "-octopus-adaptor-sdk",
        // `Reference` is the contract's record, compared in `DeviceConfig` and `Context`.
        additional_derives: [PartialEq, Eq],
    });
}

/// Exports `$device` (a [`Device`]) as the component's `driver`: generates the
/// contract's entry points and keeps one [`Instance`] in the component. Expands to
/// nothing outside `wasm32`, so the adaptor's native unit tests still build.
#[macro_export]
macro_rules! export_adaptor {
    ($device:ty) => {
        $crate::export_instance!($crate::Instance<$device>);
    };
}

/// Exports `$instance` (an [`Adaptor`], the whole component instance) as the
/// component's `driver`, keeping one in the component; see [`export_adaptor!`] for
/// adaptors written as a [`Device`].
// rustfmt cannot parse wit-bindgen's `with_types_in` form and misplaces the braces.
#[rustfmt::skip]
#[macro_export]
macro_rules! export_instance {
    ($instance:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::exports::octopus::adaptor::driver as __driver;
            use $crate::bindings::exports::octopus::adaptor::models as __models;
            use ::core::result::Result as __Result;
            use ::std::string::String as __String;
            use ::std::vec::Vec as __Vec;

            ::std::thread_local! {
                static __INSTANCE: ::std::cell::RefCell<$instance> =
                    const { ::std::cell::RefCell::new(<$instance as $crate::Adaptor>::NEW) };
            }

            struct __OctopusAdaptor;

            impl __driver::Guest for __OctopusAdaptor {
                fn describe() -> __driver::AdaptorInfo {
                    $crate::glue::describe::<$instance>()
                }
                fn configure(
                    config: __driver::DeviceConfig,
                ) -> __Result<__driver::DeviceSettings, __driver::AdaptorError> {
                    $crate::glue::configure(&__INSTANCE, config)
                }
                fn reconfigure(
                    config: __driver::DeviceConfig,
                ) -> __Result<__driver::DeviceSettings, __driver::AdaptorError> {
                    $crate::glue::reconfigure(&__INSTANCE, config)
                }
                fn poll() -> __Result<__String, __driver::AdaptorError> {
                    $crate::glue::poll(&__INSTANCE)
                }
                fn snapshot() -> __Result<__Vec<u8>, __driver::AdaptorError> {
                    $crate::glue::snapshot(&__INSTANCE)
                }
                fn restore(
                    state: __Vec<u8>,
                    from_version: __String,
                ) -> __Result<(), __driver::AdaptorError> {
                    $crate::glue::restore(&__INSTANCE, state, from_version)
                }
                fn shutdown() {
                    $crate::glue::shutdown(&__INSTANCE)
                }
            }

            impl __models::Guest for __OctopusAdaptor {
                fn describe_models() -> __Vec<__models::ModelSchema> {
                    $crate::glue::describe_models::<$instance>()
                }
            }

            $crate::bindings::export!(__OctopusAdaptor with_types_in $crate::bindings);
        };
    };
}
