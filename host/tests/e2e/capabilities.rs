//! Capabilities through a real guest: placeholder until the probe adaptor lands.
