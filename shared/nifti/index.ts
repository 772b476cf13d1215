/**
 * NIfTI codec for PatchFed.
 *
 *   readNiftiHeader(path, opts?)  -> Promise<NiftiHeader>   cheap: header bytes only (.gz: stops early)
 *   readNifti(path, opts?)        -> Promise<NiftiVolume>   validated, decoded, finite-checked volume
 *   decodedBytes(header)          -> number                 size readNifti's data will have (memory planning)
 *   toFloat32(volume)             -> Float32Array           (returns volume.data itself when already float32)
 *   writeNifti(path, image, geometry, opts?) -> Promise<void>  NIfTI-1, .nii or .nii.gz by extension, atomic
 *   inspectNiftiFile(path, opts?) -> Promise<NiftiFileReport>  fslhd-like facts + value statistics
 *
 * All user-caused failures throw PatchFedError (codes NIFTI_*) naming the file and the reason.
 */
export type {
  NiftiFileReport,
  NiftiHeader,
  NiftiReadOptions,
  NiftiScaling,
  NiftiValueStats,
  NiftiVolume,
  NiftiWriteImage,
  NiftiWriteOptions,
} from './types.ts';
export { DEFAULT_MAX_VOXELS } from './types.ts';
export { decodedBytes, readNifti, readNiftiHeader, toFloat32 } from './reader.ts';
export { writeNifti } from './writer.ts';
export { inspectNiftiFile } from './inspect.ts';
export { affineFromHeaderFields, affineToQform, float32Quaternion, quaternionToRotation } from './affine.ts';
export type { QformParams } from './affine.ts';
export { datatypeFromCode, bytesPerVoxel } from './datatypes.ts';
export { parseNiftiHeader, NIFTI1_HEADER_SIZE, NIFTI2_HEADER_SIZE } from './header.ts';
