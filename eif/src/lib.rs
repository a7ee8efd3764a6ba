//! EIF v4 images, deterministic initramfs archives and their PCR measurements.
