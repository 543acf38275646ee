//! futu-auth-client: the thin client gateway front-ends link to ask futu-authd.
#![forbid(unsafe_code)]
