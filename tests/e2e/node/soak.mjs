// 200 requests from 8 concurrent clients; all must succeed and the server's RSS must stay
// flat (growth < 5% between a warmed-up point and the end).
//   SLUICE_URL=... SLUICE_PID=... node soak.mjs
import fs from 'node:fs';
import OpenAI from 'openai';

const base = process.env.SLUICE_URL, pid = process.env.SLUICE_PID;
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;

async function one(i) {
  const stream = i % 2 === 0;
  if (i % 3 === 0) {
    const r = await client.completions.create({ model: 'm', prompt: `Item ${i}: the`, max_tokens: 16, temperature: 0.8, seed: i, stream });
    if (stream) { for await (const _ of r) {} } else if (!r.choices[0].text && r.usage.completion_tokens > 0) throw new Error('empty');
  } else {
    const r = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: `Question ${i}?` }], max_tokens: 16, temperature: 0.8, seed: i, stream });
    if (stream) { for await (const _ of r) {} } else if (r.choices[0].message.role !== 'assistant') throw new Error('bad message');
  }
}

async function run(total, concurrency) {
  let next = 0, ok = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) { const i = next++; await one(i); ok++; }
  }));
  return ok;
}

await run(24, 8);  // warm-up: allocator pools, thread stacks, caches
const r0 = rss();
const ok = await run(200, 8);
const r1 = rss();
const growth = (r1 - r0) / r0;
console.log(JSON.stringify({ requests: ok, rss_before: r0, rss_after: r1, growth }));
if (ok !== 200) { console.error('not all requests succeeded'); process.exit(1); }
// Sanitizer builds keep freed memory in quarantine: their RSS says nothing about leaks.
const limit = Number(process.env.SLUICE_RSS_GROWTH_LIMIT ?? 0.05);
if (growth >= limit) { console.error(`RSS grew ${(100 * growth).toFixed(1)}% (limit ${100 * limit}%)`); process.exit(1); }
