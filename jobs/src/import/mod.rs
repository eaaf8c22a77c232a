//! `jobs import`: copies another registry's content into this one (see the README's
//! "Moving in" section). [`source`] is what it reads from.

pub mod source;
