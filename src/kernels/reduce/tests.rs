//! Every ISA the host has equals the scalar twin bit for bit.
