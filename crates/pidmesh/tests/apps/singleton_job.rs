//! App 3.
