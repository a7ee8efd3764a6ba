//! PID 1 of a CCC enclave.

fn main() {}
