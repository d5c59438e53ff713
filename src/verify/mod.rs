pub mod restore_test;
