//! The credentials file of a user: its JWT and its seed, in the layout NATS clients read
//! (async-nats' `credentials_file` and `ConnectOptions::with_credentials`, the `nats` CLI).

/// The text of a creds file holding `user_jwt` and the user's `seed` (`SU…`).
pub fn creds_file(user_jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n\
         {user_jwt}\n\
         ------END NATS USER JWT------\n\
         \n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\
         \n\
         -----BEGIN USER NKEY SEED-----\n\
         {seed}\n\
         ------END USER NKEY SEED------\n\
         \n\
         *************************************************************\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hold_the_jwt_then_the_seed() {
        let text = creds_file("eyJ.a.b", "SUABC");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN NATS USER JWT-----");
        assert_eq!(lines[1], "eyJ.a.b");
        assert_eq!(lines[2], "------END NATS USER JWT------");
        let seed_at = lines
            .iter()
            .position(|l| *l == "-----BEGIN USER NKEY SEED-----")
            .unwrap();
        assert_eq!(lines[seed_at + 1], "SUABC");
        assert_eq!(lines[seed_at + 2], "------END USER NKEY SEED------");
    }
}
