-- Argo CD health of a slipway.dev CanaryAnalysis, one canary's record (generated into ../../../argocd-cm.yaml
-- by slipway_dev.argocd_cm). As Argo Rollouts' AnalysisRun: running is Progressing, a rolled-back or aborted canary
-- Degraded (with the decision that ended it), a promoted or replaced one Healthy.
local hs = {}
local canary = (obj.spec ~= nil and obj.spec.canaryVersion) or "the canary"
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the slipway operator to record " .. canary
  return hs
end
local last = nil
if obj.status.decisions ~= nil then
  for _, d in ipairs(obj.status.decisions) do last = d end
end
local function said(default)
  if last ~= nil and last.message ~= nil and last.message ~= "" then return last.message end
  return default
end
local phase = obj.status.phase
if phase == "Promoted" then
  hs.status = "Healthy"
  hs.message = said(canary .. " promoted")
elseif phase == "Replaced" then
  hs.status = "Healthy"
  hs.message = said(canary .. " replaced by another target")
elseif phase == "RolledBack" or phase == "Aborted" then
  hs.status = "Degraded"
  hs.message = said(canary .. " " .. phase)
else
  hs.status = "Progressing"
  local verdict = obj.status.lastVerdict or "no verdict yet"
  hs.message = canary .. " under analysis: " .. verdict
end
return hs
