//! The template's enclave side.

fn main() {}
