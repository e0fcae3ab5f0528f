-- Argo CD health of a slipway.dev ModelVersion (generated into ../../../argocd-cm.yaml by slipway_dev.argocd_cm).
-- Ready needs Verified (artifact present, sha256 matches) and GatesPassed.
local hs = {}
local function condition(kind)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == kind then return c end
    end
  end
  return nil
end
local function explain(c, default)
  if c ~= nil and c.message ~= nil and c.message ~= "" then return c.message end
  if c ~= nil and c.reason ~= nil then return c.reason end
  return default
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the slipway operator to verify the artifact"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the slipway operator to observe generation " .. tostring(generation)
  return hs
end
local ready, stalled, gates = condition("Ready"), condition("Stalled"), condition("GatesPassed")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = explain(ready, "Verified")
elseif stalled ~= nil and stalled.status == "True" then
  -- ChecksumMismatch or ArtifactNotFound: the registered artifact is not what was trained.
  hs.status = "Degraded"
  hs.message = explain(stalled, "Stalled")
elseif gates ~= nil and gates.status == "False" then
  -- A valid record of a model too poor to serve: it will not become Ready by waiting.
  hs.status = "Degraded"
  hs.message = explain(gates, "GatesFailed")
else
  -- Verifying, S3 unreachable, Secret not there yet, or deletion blocked while a Rollout serves it.
  hs.status = "Progressing"
  hs.message = explain(ready, "Verifying")
end
return hs
