//! Helpers shared by the cross-crate tests (paths to ../shared vectors, servers on loopback).
