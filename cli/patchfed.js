#!/usr/bin/env node
// Launcher: PatchFed is TypeScript run through the tsx loader, so `npx patchfed` works
// right after `npm install` with no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv);
