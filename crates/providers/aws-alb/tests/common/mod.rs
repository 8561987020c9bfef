//! The moto server for the tests: `cutover_aws_alb::moto::MotoServer`, started on a free
//! loopback port, polled until it answers, killed on drop.

pub use cutover_aws_alb::moto::MotoServer as Moto;
