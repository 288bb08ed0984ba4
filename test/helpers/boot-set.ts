import { spawn, spawnSync } from 'node:child_process'
import { chmod, copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { writeRandomFile } from './data.js'

/*
 * A tiny bootable set built from Debian's packages: the installed kernel, an initramfs of
 * busybox-static whose /init loads virtio and ext4, mounts /dev/vda read-only, runs busybox from that
 * disk to hash a file on it and prints a marker with the hash, then powers off; and the ext4 disk
 * (`mke2fs -d`), mostly random files so that the whole image has to travel.
 */

export const MARKER = 'IMGSWARM-BOOT-MARKER'

/** The modules /init loads, in order (Debian builds virtio and ext4 as modules). */
const MODULES = ['virtio_ring', 'virtio', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'virtio_blk', 'crc16', 'mbcache', 'jbd2', 'crc32c_generic', 'ext4']

function kernelVersion (): string | undefined {
  const r = spawnSync('sh', ['-c', 'ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1'], { encoding: 'utf8' })
  const m = /vmlinuz-(.+)$/.exec(r.stdout.trim())
  return m?.[1]
}

/** Why a VM cannot be booted here, or undefined when it can. */
export function bootSkipReason (): string | undefined {
  if (spawnSync('qemu-system-x86_64', ['--version']).status !== 0) return 'qemu-system-x86_64 not found (apt-get install qemu-system-x86)'
  if (spawnSync('qemu-img', ['--version']).status !== 0) return 'qemu-img not found (apt-get install qemu-utils)'
  for (const [tool, pkg] of [['mke2fs', 'e2fsprogs'], ['cpio', 'cpio']]) if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} not found (apt-get install ${pkg})`
  const busybox = spawnSync('file', ['-L', '/bin/busybox'], { encoding: 'utf8' }).stdout
  if (!existsSync('/bin/busybox') || (busybox !== '' && !/statically linked|static-pie/.test(busybox))) return 'no static /bin/busybox (apt-get install busybox-static)'
  const v = kernelVersion()
  if (v == null) return 'no kernel in /boot (apt-get install linux-image-amd64)'
  for (const m of MODULES) if (modulePath(v, m) == null) return `kernel module ${m} not found under /lib/modules/${v}`
  return undefined
}

function modulePath (version: string, name: string): string | undefined {
  const r = spawnSync('sh', ['-c', `find /lib/modules/${version}/kernel -name '${name}.ko' | head -1`], { encoding: 'utf8' })
  return r.stdout.trim() || undefined
}

/** The disk comes raw (`disk`) and converted to qcow2 (`diskQcow2`): the two formats Nova boots from. */
export interface BootSet { kernel: string, initrd: string, disk: string, diskQcow2: string, payloadSha256: string }

/** Builds the set in `dir`: a disk of `diskMiB` MiB with about `dataMiB` MiB of random files. */
export async function makeBootSet (dir: string, diskMiB: number, dataMiB: number): Promise<BootSet> {
  const version = kernelVersion()!
  const initDir = join(dir, 'initramfs')
  for (const d of ['bin', 'proc', 'sys', 'dev', 'mnt', 'lib/modules']) await mkdir(join(initDir, d), { recursive: true })
  await copyFile('/bin/busybox', join(initDir, 'bin/busybox'))
  for (const m of MODULES) await copyFile(modulePath(version, m)!, join(initDir, 'lib/modules', `${m}.ko`))
  await writeFile(join(initDir, 'init'), [
    '#!/bin/busybox sh',
    '/bin/busybox --install -s /bin',
    'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev',
    `for m in ${MODULES.join(' ')}; do insmod /lib/modules/$m.ko 2>/dev/null; done`,
    'for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done',
    'if mount -t ext4 -o ro /dev/vda /mnt; then',
    `  echo "${MARKER} $(/mnt/bin/busybox sh /mnt/hello.sh)"`,
    'else',
    '  echo "MOUNT-FAILED"',
    'fi',
    'poweroff -f',
    ''
  ].join('\n'))
  await chmod(join(initDir, 'init'), 0o755)
  const initrd = join(dir, 'initrd.cpio')
  const cpio = spawnSync('sh', ['-c', `cd '${initDir}' && find . | cpio -o -H newc --quiet > '${initrd}'`], { encoding: 'utf8' })
  if (cpio.status !== 0) throw new Error(`cpio failed: ${cpio.stderr}`)

  const root = join(dir, 'disk-root')
  await mkdir(join(root, 'bin'), { recursive: true })
  await mkdir(join(root, 'data'), { recursive: true })
  await copyFile('/bin/busybox', join(root, 'bin/busybox'))
  await chmod(join(root, 'bin/busybox'), 0o755)
  await writeFile(join(root, 'hello.sh'), '/mnt/bin/busybox sha256sum /mnt/data/payload | /mnt/bin/busybox cut -c1-64\n')
  const payloadSha256 = (await writeRandomFile(join(root, 'data/payload'), 4 * 1024 * 1024)).slice(7)
  for (let k = 0; k * 16 < dataMiB - 4; k++) await writeRandomFile(join(root, 'data', `filler${k}`), Math.min(16, dataMiB - 4 - k * 16) * 1024 * 1024)
  const disk = join(dir, 'disk.img')
  const mk = spawnSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', root, disk, `${diskMiB}M`], { encoding: 'utf8' })
  if (mk.status !== 0) throw new Error(`mke2fs failed: ${mk.stderr}`)
  const diskQcow2 = join(dir, 'disk.qcow2')
  const convert = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', disk, diskQcow2], { encoding: 'utf8' })
  if (convert.status !== 0) throw new Error(`qemu-img convert failed: ${convert.stderr}`)
  const kernel = join('/boot', `vmlinuz-${version}`)
  await readdir(dir)
  return { kernel, initrd, disk, diskQcow2, payloadSha256 }
}

export interface BootResult {
  /** Milliseconds from the start of qemu to the marker line on the serial console. */
  markerMs?: number
  /** The marker line. */
  line?: string
  console: string
}

/**
 * Boots the set under TCG with its disk from an NBD export (read-only) of an image in `format` (default
 * raw), the serial console to a file, and waits for the marker (at most `timeoutMs`); `onMarker` runs
 * the moment it appears.
 */
export async function bootFromNbd (set: BootSet, socket: string, exportName: string, consoleFile: string, timeoutMs: number, options: { onMarker?: () => void | Promise<void>, format?: 'raw' | 'qcow2' } = {}): Promise<BootResult> {
  const { onMarker, format = 'raw' } = options
  const started = Date.now()
  const qemu = spawn('qemu-system-x86_64', [
    '-m', '256', '-smp', '1', '-display', 'none', '-monitor', 'none', '-no-reboot', '-nic', 'none',
    '-serial', `file:${consoleFile}`,
    '-kernel', set.kernel, '-initrd', set.initrd, '-append', 'console=ttyS0 quiet panic=-1',
    '-drive', `driver=${format},file.driver=nbd,file.server.type=unix,file.server.path=${socket},file.export=${exportName},if=virtio,read-only=on`
  ], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  qemu.stderr.on('data', b => { stderr += String(b) })
  let exited = false
  qemu.once('exit', () => { exited = true })
  const result: BootResult = { console: '' }
  try {
    while (Date.now() - started < timeoutMs) {
      const text = await readFile(consoleFile, 'utf8').catch(() => '')
      const line = text.split('\n').find(l => l.includes(MARKER) || l.includes('MOUNT-FAILED'))
      if (line != null) {
        result.markerMs = Date.now() - started
        result.line = line.trim()
        await onMarker?.()
        break
      }
      if (exited) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  } finally {
    if (!exited) qemu.kill('SIGKILL')
    await new Promise<void>(resolve => { if (exited) resolve(); else qemu.once('exit', () => resolve()) })
    result.console = (await readFile(consoleFile, 'utf8').catch(() => '')).slice(-2000) + stderr.slice(-1000)
  }
  return result
}
