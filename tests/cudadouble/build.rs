//! The double answers to the driver's SONAME so that `dladdr` places its driver functions in
//! "libcuda", as on a real machine, and binds its own references to itself (-Bsymbolic) as
//! the real libraries do: the addresses its cuGetProcAddress hands out are its own, never
//! the interposer's.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcuda.so.1");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic");
}
