//! The files the sinks store outputs in, as their writers and their readers (replay's archive,
//! queries by date, a sealed file merged after a restart) both see them: the path layout of a
//! stream's hours and the file formats.

pub mod columnar;
pub mod format;
pub mod layout;
