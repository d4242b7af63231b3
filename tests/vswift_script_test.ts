/** ./vswift on a machine that lacks packages: apt-get is asked to wait for a held lock, not to fail. */
import assert from "node:assert/strict";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);

Deno.test("./vswift installs missing packages with apt-get waiting for the dpkg lock", async () => {
  const bin = await Deno.makeTempDir({ prefix: "vswift-bin-" });
  try {
    const log = `${bin}/apt.log`;
    // A PATH with the shell tools the script uses, a recording apt-get and sudo, and no ffmpeg or gcc.
    for (const tool of ["bash", "dirname", "id", "head", "cut", "env"]) {
      const which = await new Deno.Command("bash", { args: ["-c", `command -v ${tool}`], stdout: "piped" })
        .output();
      await Deno.symlink(new TextDecoder().decode(which.stdout).trim(), `${bin}/${tool}`);
    }
    await Deno.writeTextFile(`${bin}/apt-get`, `#!${bin}/bash\necho "$*" >> ${log}\n`);
    await Deno.writeTextFile(`${bin}/sudo`, `#!${bin}/bash\nexec "$@"\n`);
    await Deno.chmod(`${bin}/apt-get`, 0o755);
    await Deno.chmod(`${bin}/sudo`, 0o755);
    const o = await new Deno.Command(`${bin}/bash`, {
      args: [`${ROOT}vswift`],
      env: { PATH: bin },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(o.stderr);
    // No task given: the usage, after the installation step.
    assert.equal(o.code, 2, err);
    assert.match(err, /installing ffmpeg gcc/);
    const calls = (await Deno.readTextFile(log)).trim().split("\n");
    assert.equal(calls.length, 2, calls.join("\n"));
    assert.match(calls[0], /-o DPkg::Lock::Timeout=\d+ update/);
    assert.match(calls[1], /-o DPkg::Lock::Timeout=\d+ install -y -qq ffmpeg gcc/);
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});
