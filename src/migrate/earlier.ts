/**
 * Checksums of shipped migrations as earlier tsm releases compiled them.
 *
 * A migration's checksum is the SHA-256 of the compiled file (files.ts). When a release changes a
 * shipped migration's file (0001–0005 changed after tsm 0.1.0: their notes became data instead of SQL
 * comments, 0005 keeps owner and grants), every database migrated by the earlier release would
 * read "modified", and `up` would refuse. The checksums below are what those releases recorded;
 * tsm treats a shipped migration recorded with one of them as applied ("applied by an earlier
 * tsm"). Only shipped migrations, and only while the file is the one shipped with this tsm: a
 * team's edited copy still reads "modified".
 *
 * When a release changes a shipped migration file, add the previous release's checksum here
 * (build the previous release, `sha256` of `dist/migrations/<name>.js` with CRLF → LF).
 */
export interface EarlierChecksum {
  /** The release that shipped this version of the file. */
  release: string;
  checksum: string;
}

const R010 = 'tsm 0.1.0 (build 897b880)';

export const EARLIER_CHECKSUMS: Readonly<Record<string, readonly EarlierChecksum[]>> = {
  '0001_create_table': [{ release: R010, checksum: '8ddf18298b5035cd5ee33c69c79d3c36727f2663cd5582f338b5275a43c24335' }],
  '0002_widen_session_columns': [{ release: R010, checksum: '72816af07a1b2c08e800e34a059ca37aa800fbfaf3debb7e8bfb672e9a068eec' }],
  '0003_diagnostic_columns': [{ release: R010, checksum: 'fa8d489e994191acc78e580bfe36016c9f3a57fda73f837d248894e3eb50d9c3' }],
  '0004_user_id_unique_index': [{ release: R010, checksum: 'ae1e93399846516d37b7bebb99d76d4b8334e209fdbd6f4cfa77d98a1059cdf4' }],
  '0005_upsert_function': [{ release: R010, checksum: 'c97cd6797f9bfd725e4ac2320949c05564fe5704ab5fefb3a8ff6f3b4aa236d1' }],
};

/** The earlier release that recorded `checksum` for shipped migration `name`, or null. */
export function earlierRelease(name: string, checksum: string | null): string | null {
  if (checksum === null) return null;
  return EARLIER_CHECKSUMS[name]?.find((e) => e.checksum === checksum)?.release ?? null;
}
