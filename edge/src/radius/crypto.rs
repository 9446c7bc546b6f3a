//! RADIUS authenticators and credentials: Message-Authenticator, CHAP, MS-CHAPv2 and MPPE keys.
