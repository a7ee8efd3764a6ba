//! The template's parent side.

fn main() {}
