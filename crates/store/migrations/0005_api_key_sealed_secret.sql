-- API key secrets that can verify access tokens. Portable SQL, as 0001.
--
-- Hex of the secret sealed with the server key (`<data_dir>/server.key`, ChaCha20-Poly1305): the
-- 12-byte random nonce, then the ciphertext and its tag; the key's SID and account SID are its
-- associated data. The digest of 0002 stays, for HTTP Basic auth. NULL for keys made before this
-- column existed: they authenticate but cannot sign access tokens.
ALTER TABLE api_keys ADD COLUMN secret_sealed TEXT;
