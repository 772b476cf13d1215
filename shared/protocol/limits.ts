/**
 * Size limits of the wire protocol. Every receiver enforces them before doing work, so a peer
 * cannot make the other side allocate, hash or decrypt more than these.
 */
import { SEAL_OVERHEAD_BYTES } from '../crypto/seal.ts';

/**
 * 2: signed control messages, fit instructions in round tasks.
 * 3: secure aggregation (secagg-* messages, masked ring-vector uploads): a version-2 site would
 *    send plain weights into a round whose coordinator may only ever see masked vectors.
 */
export const PROTOCOL_VERSION = 3;

const MiB = 1024 * 1024;
/** Chunk sizes for update uploads and checkpoint downloads (plaintext bytes per chunk). */
export const MIN_CHUNK_BYTES = 1 * MiB;
export const DEFAULT_CHUNK_BYTES = 2 * MiB;
export const MAX_CHUNK_BYTES = 4 * MiB;
/** An update chunk on the wire: plaintext plus the secretbox authenticator. */
export const MAX_CIPHERTEXT_BYTES = MAX_CHUNK_BYTES + SEAL_OVERHEAD_BYTES;
/** Largest update or checkpoint payload (the thesis U-Net is ~90 MB as float32; consortia go to ~1 GB). */
export const MAX_PAYLOAD_BYTES = 2048 * MiB;
/** Budget for everything in a message that is not a binary attachment (strings, keys, numbers). */
export const MAX_CONTROL_MESSAGE_BYTES = 64 * 1024;
/** A whole message including its binary attachment. */
export const MAX_MESSAGE_BYTES = MAX_CIPHERTEXT_BYTES + MAX_CONTROL_MESSAGE_BYTES;
/**
 * socket.io's default maxHttpBufferSize (1 MB) would drop our chunks; servers must be created
 * with `new Server(http, { maxHttpBufferSize: SOCKET_IO_MAX_HTTP_BUFFER_SIZE })`.
 */
export const SOCKET_IO_MAX_HTTP_BUFFER_SIZE = MAX_MESSAGE_BYTES;
/** Nesting depth and array length any message may have (ours need 4 and a few). */
export const MAX_MESSAGE_DEPTH = 8;
export const MAX_ARRAY_LENGTH = 256;
export const MAX_ERROR_TEXT = 1000;
export const MAX_DICE_LABELS = 64;
/**
 * Sites in one secure-aggregation round: bounds the roster, the share envelopes a site sends or
 * receives and the shares it reveals (each list is one message; 128 entries of ids, 32-byte keys
 * and 176-byte envelopes stay far inside MAX_CONTROL_MESSAGE_BYTES and MAX_CIPHERTEXT_BYTES).
 */
export const MAX_SECAGG_SITES = 128;
