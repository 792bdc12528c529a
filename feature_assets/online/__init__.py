"""Online serving: batch uploads (upload), the key-value store (kv_store), streaming writes
(streaming_writer), fetches (fetcher) and the HTTP service (service); IRs in ir, the value encoding in codec."""
