//! import
pub(crate) fn import(_: &crate::cli::ImportArgs) -> Result<crate::exit::Exit, crate::exit::Failure> { todo!() }
