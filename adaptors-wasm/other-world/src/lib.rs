//! A component of another world (`acme:thing/thing`), used to prove that the limb
//! refuses components that do not implement `octopus:adaptor/adaptor`: it lacks the
//! `driver` export and imports `acme:thing/host-stuff`, which the limb does not provide.

use acme::thing::host_stuff;
use exports::acme::thing::api::Guest;

wit_bindgen::generate!({
    path: "wit",
    world: "thing",
});

struct Thing;

impl Guest for Thing {
    fn hello() -> String {
        format!("hello, {}", host_stuff::secret())
    }
}

export!(Thing);
