//! drill
pub(crate) async fn drill(_: &crate::cli::DrillArgs) -> Result<crate::exit::Exit, crate::exit::Failure> { todo!() }
