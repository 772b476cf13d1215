/**
 * The coordinator's network face: an Express app on HTTP or HTTPS, socket.io on the same server
 * (websocket only) behind the connection gate, and listening with a clear error when the port
 * cannot be had.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import express, { type Express } from 'express';
import { Server as SocketIoServer } from 'socket.io';
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { SOCKET_IO_MAX_HTTP_BUFFER_SIZE } from '../../shared/protocol/limits.ts';
import { ConnectionGate } from './connection-gate.ts';
import type { EventHub } from './events.ts';
import type { CoordinatorSetup } from './setup.ts';

export interface CoordinatorServer {
  app: Express;
  server: HttpServer;
  io: SocketIoServer;
  gate: ConnectionGate;
}

export function createCoordinatorServer(setup: CoordinatorSetup, hub: EventHub): CoordinatorServer {
  const app = express();
  app.disable('x-powered-by');
  const server: HttpServer = setup.tls ? createHttpsServer({ cert: setup.tls.cert, key: setup.tls.key }, app) : createHttpServer(app);
  // Before authentication a connection is held to what connection-gate.ts allows; websocket only
  // (sites never used polling; the dashboard page neither), so every connection is one TCP socket.
  const gate = new ConnectionGate(setup.config.limits, (reason, client, message) =>
    hub.noteRepeated(reason, 'connection-refused', { reason, message }, null, 'warn', client),
  );
  const io = new SocketIoServer(server, {
    maxHttpBufferSize: SOCKET_IO_MAX_HTTP_BUFFER_SIZE,
    serveClient: false,
    cors: undefined,
    transports: ['websocket'],
    allowRequest: gate.allowRequest,
    connectTimeout: setup.config.limits.handshakeTimeoutSeconds * 1000,
    // A site's training step blocks its event loop (tfjs kernels are synchronous): a thesis-size
    // step on a busy CPU can take a minute. Unauthenticated connections are bounded by the
    // connection gate's handshake timeout, not by pings, so authenticated sites get slack here.
    pingInterval: 25_000,
    pingTimeout: 120_000,
  });
  gate.attach(io);
  return { app, server, io, gate };
}

/** Listens on the configured host and port; returns the URL with the actual port (config port 0 = any free one). */
export async function listenCoordinator(server: HttpServer, setup: CoordinatorSetup): Promise<{ url: string; port: number }> {
  const { host, port: wanted } = setup.config;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(wanted, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    throw new PatchFedError('listen-failed', `Coordinator cannot listen on ${host}:${wanted}: ${errorMessage(e)}.`, { subject: `${host}:${wanted}` });
  }
  const address = server.address();
  if (address === null || typeof address === 'string') throw new PatchFedError('listen-failed', `Coordinator on ${host}:${wanted} has no TCP address after listening.`, { subject: `${host}:${wanted}` });
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return { url: `${setup.tls ? 'https' : 'http'}://${shownHost}:${address.port}`, port: address.port };
}
