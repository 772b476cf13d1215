/**
 * A self-signed TLS certificate for 127.0.0.1 / localhost (EC P-256, valid until 2126), made
 * once with
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500 \
 *     -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
 * so the TLS tests need no openssl at run time. Test material only: never trust it elsewhere.
 */
export const TEST_TLS_CERT = `-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUeDmAz70uVJrAVrXgznKDbEz2wZMwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMzE1MzcxMloYDzIxMjYxMTA5
MTUzNzEyWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQz58o3HUMQkL8aRuC+xLYpFhmwqr/+G5rnm/PGvmZPuekqhk6VSmLw
3gQQ/dlkFW7e9flzIbiTu1zqM6/Ft2/mo28wbTAdBgNVHQ4EFgQU0lzKsv8Q7pV3
PQsndankQzgWdo0wHwYDVR0jBBgwFoAU0lzKsv8Q7pV3PQsndankQzgWdo0wDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDRwAwRAIgFHaNRBfJNl4WTmF+qzwGwjHHvkI4+drFnc8x/X9Vwt8CIGR8
Sv5eZ99PankCkbOfjHBox2plPxfufdPiQdPKwrdN
-----END CERTIFICATE-----
`;

export const TEST_TLS_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgiM6DYJtOWacn9Dsp
wGA6fnzdjFdAPrqu34p+no8yYb6hRANCAAQz58o3HUMQkL8aRuC+xLYpFhmwqr/+
G5rnm/PGvmZPuekqhk6VSmLw3gQQ/dlkFW7e9flzIbiTu1zqM6/Ft2/m
-----END PRIVATE KEY-----
`;
